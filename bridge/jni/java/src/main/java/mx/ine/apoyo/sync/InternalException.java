// A failure inside the library (SQLITE, IO, CRYPTO, INTERNAL) or a caught panic (PANIC, a bug): nothing durable was lost.
package mx.ine.apoyo.sync;

/** A failure inside the library (SQLITE, IO, CRYPTO, INTERNAL) or a caught panic (PANIC, a bug): nothing durable was lost. */
public final class InternalException extends SyncException {
    private static final long serialVersionUID = 1L;

    InternalException(ErrorCode code, String message) {
        super(code, message);
    }
}
