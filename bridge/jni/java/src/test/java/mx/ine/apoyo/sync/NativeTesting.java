// Test-only natives of libapoyo_jni.so built with the `testing` feature
// (bridge/jni/src/testing.rs): a forced panic and a failure of any code.
package mx.ine.apoyo.sync;

final class NativeTesting {
    static {
        System.loadLibrary("apoyo_jni");
    }

    private NativeTesting() {}

    static native void panic() throws SyncException;

    static native void fail(int code) throws SyncException;
}
