// The master key could not be used (codes 20-23): the KeyGuard failed or threw (KEY_UNAVAILABLE), the store was made on another device (WRONG_DEVICE), or its data failed to authenticate.
package mx.ine.apoyo.sync;

/** The master key could not be used (codes 20-23): the KeyGuard failed or threw (KEY_UNAVAILABLE), the store was made on another device (WRONG_DEVICE), or its data failed to authenticate. */
public final class KeyException extends SyncException {
    private static final long serialVersionUID = 1L;

    KeyException(ErrorCode code, String message) {
        super(code, message);
    }
}
