// Shared pieces of the Java tests: a software KeyGuard (AES-256-GCM, the label as AAD), temp
// folders, the example images, and the live endpoint scripts/test-java.sh starts (system
// properties apoyo.endpoint, apoyo.pubkey, apoyo.ineroot, apoyo.otherroot, apoyo.images) with
// its dev mailbox.
package mx.ine.apoyo.sync;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.SecureRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Cipher;
import javax.crypto.SecretKey;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

final class TestSupport {
    private TestSupport() {}

    /** A KeyGuard in software for the tests (the app uses AndroidKeystoreKeyGuard). */
    static final class SoftGuard implements KeyGuard {
        private final SecretKey key;
        int wraps;
        int unwraps;

        SoftGuard() {
            byte[] k = new byte[32];
            new SecureRandom().nextBytes(k);
            key = new SecretKeySpec(k, "AES");
        }

        @Override
        public byte[] wrap(byte[] label, byte[] secret) throws Exception {
            wraps++;
            byte[] iv = new byte[12];
            new SecureRandom().nextBytes(iv);
            Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
            c.init(Cipher.ENCRYPT_MODE, key, new GCMParameterSpec(128, iv));
            c.updateAAD(label);
            byte[] ct = c.doFinal(secret);
            byte[] out = new byte[12 + ct.length];
            System.arraycopy(iv, 0, out, 0, 12);
            System.arraycopy(ct, 0, out, 12, ct.length);
            return out;
        }

        @Override
        public byte[] unwrap(byte[] label, byte[] wrapped) throws Exception {
            unwraps++;
            Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
            c.init(Cipher.DECRYPT_MODE, key, new GCMParameterSpec(128, wrapped, 0, 12));
            c.updateAAD(label);
            return c.doFinal(wrapped, 12, wrapped.length - 12);
        }
    }

    static File tempDir(String name) throws IOException {
        File parent = Files.createTempDirectory("apoyo-java-").toFile();
        parent.deleteOnExit();
        return new File(parent, name);
    }

    static byte[] randomKey() {
        byte[] k = new byte[32];
        new SecureRandom().nextBytes(k);
        return k;
    }

    /**
     * A well-formed INE root line (the Ed25519 base point) for the tests that need no
     * endpoint; no endpoint's receipts chain to it.
     */
    static final String FIXED_ROOT =
            "apoyo-ine-root-v1 5866666666666666666666666666666666666666666666666666666666666666";

    /** The live endpoint's INE root line (its key folder's ine-root.pub). */
    static String ineRoot() {
        return required("apoyo.ineroot");
    }

    /** Another key folder's INE root line: the endpoint's receipts do not chain to it. */
    static String otherIneRoot() {
        return required("apoyo.otherroot");
    }

    static String endpoint() {
        return required("apoyo.endpoint");
    }

    static byte[] endpointKey() {
        String hex = required("apoyo.pubkey").trim();
        byte[] out = new byte[hex.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(hex.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }

    static byte[] image(String name) throws IOException {
        return Files.readAllBytes(new File(required("apoyo.images"), name).toPath());
    }

    static byte[][] images() throws IOException {
        return new byte[][] {image("front.jpg"), image("back.jpg"), image("selfie.jpg"),
            image("signature.png")};
    }

    private static String required(String property) {
        String v = System.getProperty(property);
        if (v == null || v.isEmpty()) {
            throw new IllegalStateException("system property " + property
                    + " is not set: run the tests with scripts/test-java.sh");
        }
        return v;
    }

    /** The activation code the dev endpoint "e-mailed" to {@code email}. */
    static String mailboxCode(String email) throws IOException {
        URL url = new URL(endpoint() + "/v1/dev/mailbox/" + email);
        HttpURLConnection c = (HttpURLConnection) url.openConnection();
        try (InputStream in = c.getInputStream()) {
            ByteArrayOutputStream b = new ByteArrayOutputStream();
            in.transferTo(b);
            String body = b.toString(StandardCharsets.UTF_8);
            Matcher m = Pattern.compile("\"code\":\"([^\"]+)\"").matcher(body);
            if (!m.find()) {
                throw new IOException("no code in the mailbox answer");
            }
            return m.group(1);
        } finally {
            c.disconnect();
        }
    }
}
