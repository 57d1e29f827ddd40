// Too little free space remains for the capture (STORAGE_FULL); nothing was written.
package mx.ine.apoyo.sync;

/** Too little free space remains for the capture (STORAGE_FULL); nothing was written. */
public final class StorageFullException extends SyncException {
    private static final long serialVersionUID = 1L;

    StorageFullException(ErrorCode code, String message) {
        super(code, message);
    }
}
