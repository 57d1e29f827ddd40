// The device must register or activate first, or the activation code was refused (codes 42-44).
package mx.ine.apoyo.sync;

/** The device must register or activate first, or the activation code was refused (codes 42-44). */
public final class ActivationException extends SyncException {
    private static final long serialVersionUID = 1L;

    ActivationException(ErrorCode code, String message) {
        super(code, message);
    }
}
