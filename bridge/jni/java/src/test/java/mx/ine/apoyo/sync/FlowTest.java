// capture -> sync -> receipt from Java against a real reference endpoint process (apoyo serve
// --dev, started by scripts/test-java.sh): register, activate with the dev mailbox's code,
// refused captures, network policies, cancel from another thread, events, receipts, retry;
// the README example; and a device provisioned with another INE root, which deletes nothing.
package mx.ine.apoyo.sync;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.Test;

public class FlowTest {
    private static final String SOLO_LOCAL = "[{\"id\":\"solo-local\",\"name\":\"Only on this device\","
            + "\"accepted_models\":[\"G\"],\"vigencia_cutoff\":\"2022-01-01\",\"scope\":\"national\"}]";

    /** Records events; can hold the sync thread at its start until released. */
    static final class Recorder implements SyncListener {
        final List<SyncEvent> events = new CopyOnWriteArrayList<>();
        final AtomicInteger progress = new AtomicInteger();
        volatile CountDownLatch started;
        volatile CountDownLatch release;

        @Override
        public void onEvent(SyncEvent e) {
            events.add(e);
            if ("sync_started".equals(e.type()) && started != null) {
                started.countDown();
                try {
                    release.await(30, TimeUnit.SECONDS);
                } catch (InterruptedException ignored) {
                    Thread.currentThread().interrupt();
                }
            }
        }

        @Override
        public void onProgress(long done, long pending, long bytesSent) {
            progress.incrementAndGet();
            throw new IllegalStateException("a listener that throws is harmless");
        }

        boolean saw(String captureId, String state) {
            for (SyncEvent e : events) {
                if (captureId.equals(e.captureId()) && state.equals(e.state())) {
                    return true;
                }
            }
            return false;
        }
    }

    private static Capture capture(String process, String clave) throws Exception {
        byte[][] i = TestSupport.images();
        return Capture.builder(process, "G").claveElector(clave).location(19.43, -99.13, 8.0)
                .images(i[0], i[1], i[2], i[3]).build();
    }

    /** A registered and activated store in a new folder, provisioned with the endpoint's root. */
    private static SyncEngine activated(File dir, KeyGuard guard, String email) throws Exception {
        return activated(dir, guard, email, TestSupport.ineRoot());
    }

    private static SyncEngine activated(File dir, KeyGuard guard, String email, String ineRoot)
            throws Exception {
        SyncEngine e = SyncEngine.create(dir, guard,
                new Provisioning(TestSupport.endpointKey(), ineRoot), null);
        Instant expiry = e.register(TestSupport.endpoint(), email, Provider.GOOGLE,
                TestSupport.image("front.jpg"));
        assertTrue(expiry.isAfter(Instant.now()));
        try {
            e.activate("ZZZZZZZZZZ");
            fail("a wrong code activates nothing");
        } catch (ActivationException x) {
            assertSame(ErrorCode.ACTIVATION, x.code());
        }
        assertTrue(e.activate(TestSupport.mailboxCode(email)).isAfter(Instant.now()));
        assertNotNull(e.status().activatedUntil);
        return e;
    }

    @Test
    public void captureSyncReceipt() throws Exception {
        try (SyncEngine e = activated(TestSupport.tempDir("flow"), new TestSupport.SoftGuard(),
                "java@example.org")) {
            Recorder rec = new Recorder();
            e.setListener(rec);
            assertEquals(1, e.addProcesses(SOLO_LOCAL));
            assertTrue(e.processesJson().contains("revocacion-2022"));
            String id = e.capture(capture("revocacion-2022", "AAAXYZ90010101H001"));
            try {
                e.capture(capture("revocacion-2022", "AAAXYZ90010101H001"));
                fail("duplicate");
            } catch (InvalidInputException x) {
                assertSame(ErrorCode.DUPLICATE, x.code());
            }
            try {
                e.capture(capture("revocacion-2022", "NOT-A-CLAVE"));
                fail("invalid clave");
            } catch (InvalidInputException x) {
                assertSame(ErrorCode.INVALID, x.code());
                assertFalse("no value in the message", x.getMessage().contains("NOT-A-CLAVE"));
            }
            try {
                e.capture(capture("no-such-process", "AAAXYZ90010101H001"));
                fail("unknown process");
            } catch (InvalidInputException x) {
                assertSame(ErrorCode.UNKNOWN_PROCESS, x.code());
            }
            String rejected = e.capture(capture("solo-local", "BBBXYZ90010101H002"));
            assertTrue(rec.saw(id, "captured"));
            assertEquals(2, e.status().captured);
            assertFalse(e.capturesJson().contains("AAAXYZ"));

            policies(e);
            cancelFromAnotherThread(e, rec);

            SyncReport r = e.sync(Duration.ofSeconds(60));
            assertEquals(1, r.committed);
            assertEquals(1, r.quarantined);
            assertEquals(0, r.pending);
            assertSame(SyncReport.Stop.DRAINED, r.stopped);
            assertTrue(rec.saw(id, "purged") || rec.saw(id, "committed"));
            assertTrue(rec.saw(rejected, "quarantined"));
            assertTrue("progress calls: " + rec.progress.get(), rec.progress.get() >= 2);

            List<Receipt> receipts = e.receipts();
            assertEquals(1, receipts.size());
            Receipt receipt = receipts.get(0);
            assertEquals(id, receipt.captureId);
            assertTrue(receipt.verified);
            assertSame(Receipt.Result.COUNTED, receipt.result);
            assertNotNull(receipt.countedAt);

            e.retry(rejected);
            assertTrue(e.capturesJson().contains("\"state\":\"captured\""));
        }
    }

    private static void policies(SyncEngine e) throws Exception {
        e.setNetwork(NetworkType.NONE);
        SyncReport r = e.sync(null);
        assertSame(SyncReport.Stop.NO_NETWORK, r.stopped);
        assertEquals(2, r.pending);
        e.setNetworkPolicy(new NetworkPolicy(true, NetworkPolicy.UNLIMITED));
        e.setNetwork(NetworkType.CELLULAR);
        assertSame(SyncReport.Stop.WIFI_ONLY, e.sync(null).stopped);
        e.setNetworkPolicy(new NetworkPolicy(false, 1000));
        assertSame(SyncReport.Stop.CELLULAR_CAP_REACHED, e.sync(null).stopped);
        assertTrue(e.status().meteredBytes <= 1000);
        e.setNetwork(NetworkType.WIFI);
    }

    private static void cancelFromAnotherThread(SyncEngine e, Recorder rec) throws Exception {
        rec.started = new CountDownLatch(1);
        rec.release = new CountDownLatch(1);
        AtomicReference<Object> outcome = new AtomicReference<>();
        Thread t = new Thread(() -> {
            try {
                outcome.set(e.sync(Duration.ofSeconds(60)));
            } catch (SyncException x) {
                outcome.set(x);
            }
        });
        t.start();
        assertTrue(rec.started.await(30, TimeUnit.SECONDS));
        assertTrue(e.status().syncing);
        try {
            e.sync(null);
            fail("a second sync");
        } catch (SyncRunningException x) {
            assertSame(ErrorCode.SYNC_RUNNING, x.code());
        }
        e.cancel();
        rec.started = null;
        rec.release.countDown();
        t.join(60_000);
        assertTrue("sync outcome " + outcome.get(), outcome.get() instanceof SyncReport);
        assertSame(SyncReport.Stop.CANCELLED, ((SyncReport) outcome.get()).stopped);
    }

    @Test
    public void theReadmeExampleRuns() throws Exception {
        File dir = TestSupport.tempDir("readme");
        KeyGuard guard = new TestSupport.SoftGuard();
        activated(dir, guard, "readme@example.org").close();
        Receipt r = ReadmeExample.captureAndSend(dir, guard, TestSupport.endpointKey(),
                TestSupport.ineRoot(), "CCCXYZ90010101H003", TestSupport.images());
        assertNotNull("the example got its receipt", r);
        assertTrue(r.verified);
        assertSame(Receipt.Result.COUNTED, r.result);
    }

    /**
     * A device provisioned with ANOTHER key folder's INE root: the endpoint counts the capture,
     * but its receipt does not chain to the root the device holds, so nothing is deleted: the
     * capture is quarantined (receipt_invalid) with every byte and no receipt is kept. A store
     * made with one root refuses to open with another.
     */
    @Test
    public void anotherIneRootDeletesNothing() throws Exception {
        File dir = TestSupport.tempDir("other-root");
        KeyGuard guard = new TestSupport.SoftGuard();
        try (SyncEngine e = activated(dir, guard, "other-root@example.org",
                TestSupport.otherIneRoot())) {
            String id = e.capture(capture("revocacion-2022", "DDDXYZ90010101H004"));
            SyncReport r = e.sync(Duration.ofSeconds(60));
            assertEquals(0, r.committed);
            assertEquals(1, r.quarantined);
            assertEquals(0, r.pending);
            SyncStatus st = e.status();
            assertEquals(0, st.purged);
            assertEquals(1, st.quarantined);
            assertTrue("every byte kept", st.pendingBytes > 0);
            String caps = e.capturesJson();
            assertTrue(caps, caps.contains(id) && caps.contains("\"state\":\"quarantined\"")
                    && caps.contains("receipt_invalid"));
            assertTrue(e.receipts().isEmpty());
            e.retry(id);
            assertEquals(1, e.status().captured);
        }
        try {
            SyncEngine.open(dir, guard, new Provisioning(TestSupport.endpointKey(),
                    TestSupport.ineRoot()), null).close();
            fail("a store made with one root opened with another");
        } catch (KeyException x) {
            assertSame(ErrorCode.KEY_UNAVAILABLE, x.code());
        }
    }
}
