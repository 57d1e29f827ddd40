// A Java argument was null where a value is needed (NULL_POINTER), a handle is not one the library issued (INVALID_HANDLE), or an argument is malformed (INVALID_ARGUMENT).
package mx.ine.apoyo.sync;

/** A Java argument was null where a value is needed (NULL_POINTER), a handle is not one the library issued (INVALID_HANDLE), or an argument is malformed (INVALID_ARGUMENT). */
public final class InvalidArgumentException extends SyncException {
    private static final long serialVersionUID = 1L;

    InvalidArgumentException(ErrorCode code, String message) {
        super(code, message);
    }
}
