// The app's key guard: wraps and unwraps the store's master key with a platform key that never
// leaves secure hardware (android/.../AndroidKeystoreKeyGuard.java is the Android Keystore one).
package mx.ine.apoyo.sync;

/**
 * Wraps the 32-byte master key of a store with a platform key, and unwraps it. Called only
 * inside {@link SyncEngine#create} and {@link SyncEngine#open}, on the calling thread.
 *
 * <p>Throwing is the way to fail: any exception becomes a {@link KeyException} with {@link
 * ErrorCode#KEY_UNAVAILABLE}, except {@code javax.crypto.AEADBadTagException} from {@link
 * #unwrap}, which means the wrapped key was not made by this device's key ({@link
 * ErrorCode#WRONG_DEVICE}). The library overwrites its copy of {@code key} after the call.
 */
public interface KeyGuard {
    /** Wraps {@code key}, bound to {@code label} (the store's identity; use it as AAD). */
    byte[] wrap(byte[] label, byte[] key) throws Exception;

    /** Returns the 32-byte key {@link #wrap} wrapped with the same {@code label}. */
    byte[] unwrap(byte[] label, byte[] wrapped) throws Exception;
}
