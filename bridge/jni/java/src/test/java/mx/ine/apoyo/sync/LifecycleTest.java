// Opening, closing and misuse of SyncEngine on real store folders, without an endpoint: close
// twice, use after close, key guards that throw or lie, null and malformed arguments.
package mx.ine.apoyo.sync;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.time.Duration;
import org.junit.Test;

public class LifecycleTest {
    private final Provisioning prov = new Provisioning(TestSupport.randomKey(),
            TestSupport.FIXED_ROOT);

    private interface Call {
        void run() throws Exception;
    }

    private static <T extends SyncException> T expect(Class<T> type, ErrorCode code, Call call)
            throws Exception {
        try {
            call.run();
        } catch (SyncException e) {
            assertEquals(e.getMessage(), type, e.getClass());
            assertSame(e.getMessage(), code, e.code());
            return type.cast(e);
        }
        fail("expected " + code);
        return null;
    }

    @Test
    public void createReopenAndStatus() throws Exception {
        File dir = TestSupport.tempDir("store");
        TestSupport.SoftGuard guard = new TestSupport.SoftGuard();
        try (SyncEngine e = SyncEngine.create(dir, guard, prov, new EngineOptions())) {
            SyncStatus s = e.status();
            assertEquals(0, s.captured);
            assertFalse(s.registered);
            assertNull(s.activatedUntil);
            assertEquals(32, e.deviceId().length());
            expect(StoreException.class, ErrorCode.STORE_BUSY,
                    () -> SyncEngine.open(dir, guard, prov, null));
        }
        expect(StoreException.class, ErrorCode.STORE_EXISTS,
                () -> SyncEngine.create(dir, guard, prov, null));
        try (SyncEngine e = SyncEngine.open(dir, guard, prov, null)) {
            e.setNetwork(NetworkType.CELLULAR);
            e.setNetworkPolicy(new NetworkPolicy(true, 5000));
            SyncStatus s = e.status();
            assertSame(NetworkType.CELLULAR, s.network);
            assertTrue(s.policy.wifiOnly());
            assertEquals(5000, s.policy.cellularAllowanceBytes());
        }
        assertEquals("one wrap, at create", 1, guard.wraps);
        assertTrue("the reopen unwrapped the key", guard.unwraps >= 1);
    }

    @Test
    public void closeTwiceIsHarmlessAndUseAfterCloseThrows() throws Exception {
        SyncEngine e = SyncEngine.create(TestSupport.tempDir("s"), new TestSupport.SoftGuard(),
                prov, null);
        e.close();
        e.close();
        Class<EngineClosedException> closed = EngineClosedException.class;
        ErrorCode c = ErrorCode.ENGINE_CLOSED;
        expect(closed, c, e::status);
        expect(closed, c, e::deviceId);
        expect(closed, c, e::receipts);
        expect(closed, c, e::capturesJson);
        expect(closed, c, e::processesJson);
        expect(closed, c, e::cancel);
        expect(closed, c, () -> e.sync(Duration.ofSeconds(1)));
        expect(closed, c, () -> e.activate("ABCDEFGHIJ"));
        expect(closed, c, () -> e.register("http://127.0.0.1:1", "a@b.mx", Provider.GOOGLE,
                new byte[1]));
        expect(closed, c, () -> e.addProcesses("[]"));
        expect(closed, c, () -> e.retry("0193a3c4-0000-7000-8000-000000000000"));
        expect(closed, c, () -> e.setNetwork(NetworkType.WIFI));
        expect(closed, c, () -> e.setNetworkPolicy(new NetworkPolicy(false, 1)));
        expect(closed, c, () -> e.setListener(ev -> {}));
        expect(closed, c, () -> e.capture(Capture.builder("p", "G").claveElector("x").build()));
    }

    @Test
    public void aKeyGuardThatThrowsIsATypedException() throws Exception {
        File dir = TestSupport.tempDir("k");
        KeyGuard throwing = new KeyGuard() {
            @Override
            public byte[] wrap(byte[] label, byte[] key) {
                throw new IllegalStateException("keystore locked: secret-detail");
            }

            @Override
            public byte[] unwrap(byte[] label, byte[] wrapped) throws Exception {
                throw new java.security.KeyStoreException("gone");
            }
        };
        KeyException k = expect(KeyException.class, ErrorCode.KEY_UNAVAILABLE,
                () -> SyncEngine.create(dir, throwing, prov, null));
        assertFalse("the guard's message is not repeated", k.getMessage().contains("secret-detail"));
        // A guard throwing an Error (not an Exception) is caught too.
        KeyGuard erroring = new KeyGuard() {
            @Override
            public byte[] wrap(byte[] label, byte[] key) {
                throw new AssertionError("boom");
            }

            @Override
            public byte[] unwrap(byte[] label, byte[] wrapped) {
                throw new AssertionError("boom");
            }
        };
        expect(KeyException.class, ErrorCode.KEY_UNAVAILABLE,
                () -> SyncEngine.create(dir, erroring, prov, null));
        // Nothing was left behind: a working guard can create the store now.
        TestSupport.SoftGuard good = new TestSupport.SoftGuard();
        SyncEngine.create(dir, good, prov, null).close();
        expect(KeyException.class, ErrorCode.KEY_UNAVAILABLE,
                () -> SyncEngine.open(dir, throwing, prov, null));
        // Another device's key: AES-GCM fails its tag, which is WRONG_DEVICE.
        expect(KeyException.class, ErrorCode.WRONG_DEVICE,
                () -> SyncEngine.open(dir, new TestSupport.SoftGuard(), prov, null));
        KeyGuard lying = new KeyGuard() {
            @Override
            public byte[] wrap(byte[] label, byte[] key) {
                return null;
            }

            @Override
            public byte[] unwrap(byte[] label, byte[] wrapped) {
                return new byte[31];
            }
        };
        expect(KeyException.class, ErrorCode.KEY_UNAVAILABLE,
                () -> SyncEngine.open(dir, lying, prov, null));
        expect(KeyException.class, ErrorCode.KEY_UNAVAILABLE,
                () -> SyncEngine.create(TestSupport.tempDir("l"), lying, prov, null));
        SyncEngine.open(dir, good, prov, null).close();
    }

    /** Protocol v1.1: the INE root is required, as the line INE provisions; nothing is created without it. */
    @Test
    public void aMissingOrMalformedIneRootIsRefused() throws Exception {
        File dir = TestSupport.tempDir("root");
        KeyGuard g = new TestSupport.SoftGuard();
        byte[] seal = TestSupport.randomKey();
        Class<InvalidArgumentException> bad = InvalidArgumentException.class;
        InvalidArgumentException e = expect(bad, ErrorCode.INVALID_ARGUMENT,
                () -> SyncEngine.create(dir, g, new Provisioning(seal, null), null));
        assertTrue(e.getMessage(), e.getMessage().contains("ineRoot is required"));
        expect(bad, ErrorCode.INVALID_ARGUMENT,
                () -> SyncEngine.create(dir, g, new Provisioning(seal, " "), null));
        String hex = TestSupport.FIXED_ROOT.split(" ")[1];
        e = expect(bad, ErrorCode.INVALID_ARGUMENT, () -> SyncEngine.create(dir, g,
                new Provisioning(seal, "apoyo-seal-pub-v1 " + hex), null));
        assertTrue(e.getMessage(), e.getMessage().contains("ineRoot"));
        assertFalse("the message never echoes the key", e.getMessage().contains(hex));
        expect(bad, ErrorCode.INVALID_ARGUMENT,
                () -> SyncEngine.create(dir, g, new Provisioning(seal, hex), null));
        expect(bad, ErrorCode.INVALID_ARGUMENT, () -> SyncEngine.create(dir, g,
                new Provisioning(seal, "apoyo-ine-root-v1 " + "00".repeat(32)), null));
        assertFalse("nothing created without a root", dir.exists());
        SyncEngine.create(dir, g, new Provisioning(seal, TestSupport.FIXED_ROOT), null).close();
    }

    @Test
    public void nullAndMalformedArgumentsAreTyped() throws Exception {
        File dir = TestSupport.tempDir("n");
        KeyGuard g = new TestSupport.SoftGuard();
        Class<InvalidArgumentException> bad = InvalidArgumentException.class;
        expect(bad, ErrorCode.NULL_POINTER, () -> SyncEngine.create(null, g, prov, null));
        expect(bad, ErrorCode.NULL_POINTER, () -> SyncEngine.create(dir, null, prov, null));
        expect(bad, ErrorCode.NULL_POINTER, () -> SyncEngine.create(dir, g, null, null));
        expect(bad, ErrorCode.INVALID_ARGUMENT, () -> SyncEngine.create(new File(""), g, prov, null));
        expect(bad, ErrorCode.INVALID_ARGUMENT,
                () -> SyncEngine.create(dir, g, new Provisioning(new byte[31],
                        TestSupport.FIXED_ROOT), null));
        expect(bad, ErrorCode.INVALID_ARGUMENT, () -> SyncEngine.create(dir, g,
                new Provisioning(TestSupport.randomKey(), TestSupport.FIXED_ROOT, null,
                        new byte[33]), null));
        assertFalse("nothing created without a root", dir.exists());
        expect(StoreException.class, ErrorCode.NO_STORE, () -> SyncEngine.open(dir, g, prov, null));
        try (SyncEngine e = SyncEngine.create(dir, g, prov, null)) {
            expect(bad, ErrorCode.INVALID_ARGUMENT, () -> e.setNetwork(null));
            expect(bad, ErrorCode.NULL_POINTER, () -> e.setNetworkPolicy(null));
            expect(bad, ErrorCode.NULL_POINTER, () -> e.capture(null));
            expect(bad, ErrorCode.NULL_POINTER, () -> e.activate(null));
            expect(bad, ErrorCode.INVALID_ARGUMENT, () -> e.retry("not-an-id"));
            expect(bad, ErrorCode.INVALID_ARGUMENT,
                    () -> e.register("http://127.0.0.1:1", "a@b.mx", null, new byte[1]));
            expect(InvalidInputException.class, ErrorCode.UNKNOWN_CAPTURE,
                    () -> e.retry("0193a3c4-0000-7000-8000-000000000000"));
            expect(InvalidInputException.class, ErrorCode.INVALID_PROCESS,
                    () -> e.addProcesses("[{]"));
            expect(ActivationException.class, ErrorCode.NOT_REGISTERED,
                    () -> e.activate("ABCDEFGHIJ"));
        }
    }
}
