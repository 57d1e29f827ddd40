// The natives of libapoyo_jni.so (bridge/jni/src/engine.rs and ops.rs), loaded once. Package
// private: apps use SyncEngine. Every native throws a typed SyncException on failure.
package mx.ine.apoyo.sync;

final class Native {
    static {
        System.loadLibrary("apoyo_jni");
    }

    private Native() {}

    static native long open(boolean create, String dir, KeyGuard guard, byte[] endpointKey,
            String ineRoot, byte[] caPem, byte[] pins, long diskReserveBytes, String auxiliarId)
            throws SyncException;

    static native void close(long handle) throws SyncException;

    static native String setAside(String dir) throws SyncException;

    static native String version();

    static native long register(long handle, String url, String email, int provider, byte[] front)
            throws SyncException;

    static native long activate(long handle, String code) throws SyncException;

    static native int addProcesses(long handle, String json) throws SyncException;

    static native String processes(long handle) throws SyncException;

    static native String capture(long handle, String description, byte[] front, byte[] back,
            byte[] selfie, byte[] signature) throws SyncException;

    static native long[] status(long handle) throws SyncException;

    static native String captures(long handle) throws SyncException;

    static native String[] receipts(long handle) throws SyncException;

    static native String deviceId(long handle) throws SyncException;

    static native void retry(long handle, String captureId) throws SyncException;

    static native long[] sync(long handle, long budgetMs) throws SyncException;

    static native void cancel(long handle) throws SyncException;

    static native void setNetwork(long handle, int network) throws SyncException;

    static native void setNetworkPolicy(long handle, boolean wifiOnly, long allowance)
            throws SyncException;

    static native void setListener(long handle, ListenerBridge bridge) throws SyncException;
}
