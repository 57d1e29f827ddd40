// The app's subscriber to events and progress, so that no screen has to poll.
package mx.ine.apoyo.sync;

/**
 * Events and progress of an engine ({@link SyncEngine#setListener}). Called on the thread that
 * runs the operation (the sync thread for sync events): keep it short and post to the UI
 * thread. An exception thrown here is caught and dropped; it never stops a sync.
 */
public interface SyncListener {
    void onEvent(SyncEvent event);

    /** After each capture reaches a terminal state or is rescheduled. */
    default void onProgress(long done, long pending, long bytesSent) {}
}
