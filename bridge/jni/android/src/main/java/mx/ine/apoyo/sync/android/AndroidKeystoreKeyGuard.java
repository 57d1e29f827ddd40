// The Android Keystore KeyGuard: an AES-256-GCM key kept in the Keystore (StrongBox when the
// device has one) wraps the store's master key, the store's label as AAD. NEEDS THE ANDROID SDK
// TO BUILD (android.security.keystore); excluded from the host build and tests.
package mx.ine.apoyo.sync.android;

import android.os.Build;
import android.security.keystore.KeyGenParameterSpec;
import android.security.keystore.KeyProperties;
import android.security.keystore.StrongBoxUnavailableException;
import java.nio.ByteBuffer;
import java.security.KeyStore;
import javax.crypto.Cipher;
import javax.crypto.KeyGenerator;
import javax.crypto.SecretKey;
import javax.crypto.spec.GCMParameterSpec;
import mx.ine.apoyo.sync.KeyGuard;

/**
 * Wraps the apoyo-sync master key with a non-exportable AES-256-GCM key in the Android
 * Keystore. Wrapped form: 12-byte IV, then ciphertext and 16-byte tag. A wrapped key from
 * another device (or after the Keystore key was deleted and made anew) fails its tag with
 * {@code AEADBadTagException}, which the engine reports as {@code WRONG_DEVICE}.
 *
 * <p>The key is deliberately NOT bound to user authentication
 * ({@code setUserAuthenticationRequired(false)}): the Keystore permanently invalidates an
 * authentication-bound key when the user enrols a new fingerprint or face, or removes the screen
 * lock, and then every capture still queued on the phone (encrypted under the master key this
 * key wraps) would become unreadable and be lost. Background sync (WorkManager, screen off)
 * must also unwrap the key without a user present. The captures' protection rests on the
 * key never leaving secure hardware and on the app's sandbox; the app still asks for the screen
 * lock before showing captured data.
 */
public final class AndroidKeystoreKeyGuard implements KeyGuard {
    private static final String KEYSTORE = "AndroidKeyStore";
    private static final int IV_BYTES = 12;
    private static final int TAG_BITS = 128;

    private final String alias;

    /** @param alias the Keystore alias of the wrapping key (one per store), e.g. "apoyo-store" */
    public AndroidKeystoreKeyGuard(String alias) {
        this.alias = alias;
    }

    @Override
    public byte[] wrap(byte[] label, byte[] key) throws Exception {
        Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
        // The Keystore picks the IV (callers may not choose one for encryption).
        c.init(Cipher.ENCRYPT_MODE, keyForWrap());
        c.updateAAD(label);
        byte[] ct = c.doFinal(key);
        byte[] iv = c.getIV();
        return ByteBuffer.allocate(iv.length + ct.length).put(iv).put(ct).array();
    }

    @Override
    public byte[] unwrap(byte[] label, byte[] wrapped) throws Exception {
        if (wrapped.length <= IV_BYTES) {
            throw new IllegalArgumentException("wrapped key too short");
        }
        SecretKey k = existing();
        if (k == null) {
            // No Keystore key: the store was made elsewhere, or the key was lost. Not a tag
            // failure, so the engine reports KEY_UNAVAILABLE.
            throw new java.security.UnrecoverableKeyException("no Keystore key for this store");
        }
        Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
        c.init(Cipher.DECRYPT_MODE, k, new GCMParameterSpec(TAG_BITS, wrapped, 0, IV_BYTES));
        c.updateAAD(label);
        return c.doFinal(wrapped, IV_BYTES, wrapped.length - IV_BYTES);
    }

    private SecretKey existing() throws Exception {
        KeyStore ks = KeyStore.getInstance(KEYSTORE);
        ks.load(null);
        return (SecretKey) ks.getKey(alias, null);
    }

    /** The wrapping key, made on first use: in StrongBox when present, else the TEE. */
    private SecretKey keyForWrap() throws Exception {
        SecretKey k = existing();
        if (k != null) {
            return k;
        }
        if (Build.VERSION.SDK_INT >= 28) {
            try {
                return generate(true);
            } catch (StrongBoxUnavailableException e) {
                // No StrongBox on this device: the TEE-backed Keystore below.
            }
        }
        return generate(false);
    }

    private SecretKey generate(boolean strongBox) throws Exception {
        KeyGenParameterSpec.Builder spec = new KeyGenParameterSpec.Builder(alias,
                KeyProperties.PURPOSE_ENCRYPT | KeyProperties.PURPOSE_DECRYPT)
                .setKeySize(256)
                .setBlockModes(KeyProperties.BLOCK_MODE_GCM)
                .setEncryptionPaddings(KeyProperties.ENCRYPTION_PADDING_NONE)
                .setRandomizedEncryptionRequired(true)
                // Not bound to user authentication: see the class comment.
                .setUserAuthenticationRequired(false);
        if (strongBox && Build.VERSION.SDK_INT >= 28) {
            spec.setIsStrongBoxBacked(true);
        }
        KeyGenerator g = KeyGenerator.getInstance(KeyProperties.KEY_ALGORITHM_AES, KEYSTORE);
        g.init(spec.build());
        return g.generateKey();
    }
}
