// What the native side calls back (bridge/jni/src/listener.rs): it wraps the app's
// SyncListener and catches whatever it throws, so no exception reaches the native side.
package mx.ine.apoyo.sync;

final class ListenerBridge {
    private final SyncListener listener;

    ListenerBridge(SyncListener listener) {
        this.listener = listener;
    }

    void event(String type, String captureId, String state, String json) {
        try {
            listener.onEvent(new SyncEvent(type, captureId, state, json));
        } catch (Throwable t) {
            // The app's listener failed: dropped, the engine goes on.
        }
    }

    void progress(long done, long pending, long bytesSent) {
        try {
            listener.onProgress(done, pending, bytesSent);
        } catch (Throwable t) {
            // As above.
        }
    }
}
