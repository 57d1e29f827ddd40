// The engine was closed (ENGINE_CLOSED): every call after close throws this.
package mx.ine.apoyo.sync;

/** The engine was closed (ENGINE_CLOSED): every call after close throws this. */
public final class EngineClosedException extends SyncException {
    private static final long serialVersionUID = 1L;

    EngineClosedException(ErrorCode code, String message) {
        super(code, message);
    }
}
