// The store cannot be used as asked (codes 30-35): none there, one already there, open elsewhere, corrupt, of an unknown version. SyncEngine.setAside keeps an unusable one.
package mx.ine.apoyo.sync;

/** The store cannot be used as asked (codes 30-35): none there, one already there, open elsewhere, corrupt, of an unknown version. SyncEngine.setAside keeps an unusable one. */
public final class StoreException extends SyncException {
    private static final long serialVersionUID = 1L;

    StoreException(ErrorCode code, String message) {
        super(code, message);
    }
}
