// What one sync run did and why it stopped. Read from the long[] of Native.sync.
package mx.ine.apoyo.sync;

/** The outcome of {@link SyncEngine#sync}. Transport failures are retries, not exceptions. */
public final class SyncReport {
    /** Why a sync run stopped. */
    public enum Stop {
        DRAINED, BUDGET, NEEDS_ACTIVATION, CANCELLED, NO_NETWORK, WIFI_ONLY, CELLULAR_CAP_REACHED
    }

    public final long committed;
    public final long duplicates;
    public final long quarantined;
    /** Captures still waiting to be sent. */
    public final long pending;
    public final long bytesSent;
    public final long retries;
    public final Stop stopped;

    SyncReport(long[] v) {
        committed = v[0];
        duplicates = v[1];
        quarantined = v[2];
        pending = v[3];
        bytesSent = v[4];
        retries = v[5];
        Stop[] all = Stop.values();
        stopped = v[6] >= 0 && v[6] < all.length ? all[(int) v[6]] : Stop.CANCELLED;
    }
}
