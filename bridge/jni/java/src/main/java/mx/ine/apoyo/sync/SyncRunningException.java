// Another sync is running on this engine (SYNC_RUNNING).
package mx.ine.apoyo.sync;

/** Another sync is running on this engine (SYNC_RUNNING). */
public final class SyncRunningException extends SyncException {
    private static final long serialVersionUID = 1L;

    SyncRunningException(ErrorCode code, String message) {
        super(code, message);
    }
}
