// The engine refused what it was given (codes 1-8, 10, 11, 40, 41): an invalid field, a model or process it does not accept, a duplicate, an unknown capture, malformed or too large input. The message names the field, never its value.
package mx.ine.apoyo.sync;

/** The engine refused what it was given (codes 1-8, 10, 11, 40, 41): an invalid field, a model or process it does not accept, a duplicate, an unknown capture, malformed or too large input. The message names the field, never its value. */
public final class InvalidInputException extends SyncException {
    private static final long serialVersionUID = 1L;

    InvalidInputException(ErrorCode code, String message) {
        super(code, message);
    }
}
