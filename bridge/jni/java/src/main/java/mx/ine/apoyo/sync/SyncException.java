// The base of every exception the library throws, and the one factory the native side calls
// (create) to pick the typed subclass of a code. Messages never hold personal data.
package mx.ine.apoyo.sync;

/**
 * A failure of the library. Catch a subclass for one class of errors (e.g.
 * {@link InvalidInputException} for a capture the engine refused) or this class for all; {@link
 * #code()} gives the exact {@link ErrorCode}.
 */
public class SyncException extends Exception {
    private static final long serialVersionUID = 1L;
    private final ErrorCode code;

    protected SyncException(ErrorCode code, String message) {
        super(code.name() + ": " + message);
        this.code = code;
    }

    /** The exact code of this failure. */
    public ErrorCode code() {
        return code;
    }

    /** Called by the native library: the typed exception of a code. */
    static SyncException create(int value, String message) {
        ErrorCode code = ErrorCode.of(value);
        if (code == null) {
            return new InternalException(ErrorCode.INTERNAL, "unknown code " + value + ": " + message);
        }
        switch (code) {
            case INVALID: case MODEL_NOT_ACCEPTED: case CREDENTIAL_EXPIRED: case OUT_OF_SCOPE:
            case UNKNOWN_PROCESS: case PROCESS_CLOSED: case INVALID_PROCESS: case DUPLICATE:
            case UNKNOWN_CAPTURE: case CAPTURE_GONE: case DECODE: case TOO_LARGE:
                return new InvalidInputException(code, message);
            case STORAGE_FULL:
                return new StorageFullException(code, message);
            case KEY_UNAVAILABLE: case WRONG_DEVICE: case INTEGRITY: case CIPHERTEXT_VERSION:
                return new KeyException(code, message);
            case NO_STORE: case STORE_EXISTS: case STORE_BUSY: case CORRUPT_STORE:
            case STORE_VERSION: case KEYRING_INSIDE_STORE:
                return new StoreException(code, message);
            case NOT_REGISTERED: case NOT_ACTIVATED: case ACTIVATION:
                return new ActivationException(code, message);
            case TRANSIENT: case REJECTED: case BAD_RECEIPT:
                return new EndpointException(code, message);
            case ENGINE_CLOSED:
                return new EngineClosedException(code, message);
            case SYNC_RUNNING:
                return new SyncRunningException(code, message);
            case NULL_POINTER: case INVALID_HANDLE: case INVALID_ARGUMENT:
                return new InvalidArgumentException(code, message);
            case SQLITE: case IO: case CRYPTO: case INTERNAL: case PANIC: case OK:
            default:
                return new InternalException(code, message);
        }
    }
}
