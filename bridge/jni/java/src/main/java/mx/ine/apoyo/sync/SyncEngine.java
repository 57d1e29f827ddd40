// The app-facing engine over libapoyo_jni.so: one object per store, AutoCloseable. Every
// method is a thin call into Native; failures are typed SyncExceptions.
package mx.ine.apoyo.sync;

import java.io.File;
import java.time.Duration;
import java.time.Instant;
import java.util.List;

/**
 * The offline-first sync engine of one store: capture (encrypted, durable when the call
 * returns), register and activate the device, sync within a time budget, read status and
 * receipts. Thread-safe: run {@link #sync} on a worker thread while the UI thread captures,
 * reads the status, changes the network policy or calls {@link #cancel}.
 *
 * <p>{@link #close} releases the store; closing twice is harmless and every other call after
 * it throws {@link EngineClosedException}.
 */
public final class SyncEngine implements AutoCloseable {
    private final long handle;

    private SyncEngine(long handle) {
        this.handle = handle;
    }

    /** Creates a new store in {@code dir}, its master key wrapped by {@code guard}, and opens it. */
    public static SyncEngine create(File dir, KeyGuard guard, Provisioning provisioning,
            EngineOptions options) throws SyncException {
        return start(true, dir, guard, provisioning, options);
    }

    /** Opens the store in {@code dir}; an unusable one is left untouched and reported. */
    public static SyncEngine open(File dir, KeyGuard guard, Provisioning provisioning,
            EngineOptions options) throws SyncException {
        return start(false, dir, guard, provisioning, options);
    }

    private static SyncEngine start(boolean create, File dir, KeyGuard guard,
            Provisioning provisioning, EngineOptions options) throws SyncException {
        EngineOptions o = options == null ? new EngineOptions() : options;
        return new SyncEngine(Native.open(create, dir == null ? null : dir.getPath(), guard,
                provisioning == null ? null : provisioning.endpointPublicKey,
                provisioning == null ? null : provisioning.ineRoot,
                provisioning == null ? null : provisioning.caPem,
                provisioning == null ? null : provisioning.pins, o.diskReserveBytes, o.auxiliarId));
    }

    /** Moves an unusable store aside (every byte kept) so a new one can be created. */
    public static File setAside(File dir) throws SyncException {
        return new File(Native.setAside(dir == null ? null : dir.getPath()));
    }

    /** The native library's version. */
    public static String version() {
        return Native.version();
    }

    /** Registers the device with the endpoint; it e-mails an activation code (valid until the returned time). */
    public Instant register(String endpointUrl, String email, Provider provider, byte[] front)
            throws SyncException {
        int p = provider == null ? -1 : provider.value;
        return Instant.ofEpochSecond(Native.register(handle, endpointUrl, email, p, front));
    }

    /** Activates the device with the e-mailed code; returns until when the activation is valid. */
    public Instant activate(String code) throws SyncException {
        return Instant.ofEpochSecond(Native.activate(handle, code));
    }

    /** Adds or replaces process definitions (a JSON list, as examples/processes.json). */
    public int addProcesses(String json) throws SyncException {
        return Native.addProcesses(handle, json);
    }

    /** The processes this device knows, as a JSON list. */
    public String processesJson() throws SyncException {
        return Native.processes(handle);
    }

    /** Validates, encrypts and durably stores a capture; returns its id once it is durable. */
    public String capture(Capture capture) throws SyncException {
        if (capture == null) {
            throw SyncException.create(ErrorCode.NULL_POINTER.value(), "capture is null");
        }
        return Native.capture(handle, capture.description, capture.front, capture.back,
                capture.selfie, capture.signature);
    }

    /** What a status screen shows; never waits for a running sync. */
    public SyncStatus status() throws SyncException {
        return new SyncStatus(Native.status(handle));
    }

    /** Every capture still on the device, as a JSON list (ids, states, reasons, sizes). */
    public String capturesJson() throws SyncException {
        return Native.captures(handle);
    }

    /** The endpoint's receipts, re-verified. */
    public List<Receipt> receipts() throws SyncException {
        return Receipt.list(Native.receipts(handle));
    }

    /** This device's id (hex; no personal data). */
    public String deviceId() throws SyncException {
        return Native.deviceId(handle);
    }

    /** Queues a quarantined capture again (after the user fixed what the endpoint refused). */
    public void retry(String captureId) throws SyncException {
        Native.retry(handle, captureId);
    }

    /** Sends what is due within {@code budget} (null: 9 minutes). Blocks the calling thread. */
    public SyncReport sync(Duration budget) throws SyncException {
        long ms = budget == null ? 0 : Math.max(1, budget.toMillis());
        return new SyncReport(Native.sync(handle, ms));
    }

    /** Asks a running sync to stop at its next exchange boundary (from any thread). */
    public void cancel() throws SyncException {
        Native.cancel(handle);
    }

    /** Says which link the phone is on now (may change during a sync). */
    public void setNetwork(NetworkType type) throws SyncException {
        Native.setNetwork(handle, type == null ? -1 : type.value);
    }

    /** Sets the network policy and starts a new cellular allowance (may change during a sync). */
    public void setNetworkPolicy(NetworkPolicy policy) throws SyncException {
        if (policy == null) {
            throw SyncException.create(ErrorCode.NULL_POINTER.value(), "policy is null");
        }
        Native.setNetworkPolicy(handle, policy.wifiOnly(), policy.cellularAllowanceBytes());
    }

    /** Subscribes to events and progress; null unsubscribes. */
    public void setListener(SyncListener listener) throws SyncException {
        Native.setListener(handle, listener == null ? null : new ListenerBridge(listener));
    }

    /**
     * Cancels a running sync, waits for it to stop and releases the store. Harmless when
     * already closed. Captures are durable when {@link #capture} returns, so closing (or not)
     * never loses one.
     */
    @Override
    public void close() {
        try {
            Native.close(handle);
        } catch (SyncException e) {
            // Only a bug can get here (the handle is always one the library issued).
            throw new IllegalStateException("closing the engine failed", e);
        }
    }
}
