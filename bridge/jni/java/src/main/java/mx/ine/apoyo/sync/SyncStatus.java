// What a status screen shows: captures per state, bytes held, sync/registration/activation
// state, the network and its counters. Read from the long[] of Native.status.
package mx.ine.apoyo.sync;

import java.time.Instant;

/** A snapshot of the engine for a status screen ({@link SyncEngine#status}). */
public final class SyncStatus {
    public final long captured;
    public final long uploading;
    public final long committed;
    public final long quarantined;
    public final long purged;
    /** Bytes held on the device for captures not yet committed. */
    public final long pendingBytes;
    public final boolean syncing;
    public final boolean registered;
    /** Until when the activation is valid; null when not activated. */
    public final Instant activatedUntil;
    public final NetworkType network;
    public final NetworkPolicy policy;
    /** Bytes moved over cellular or metered links since the policy was last set. */
    public final long meteredBytes;
    /** Bytes moved over any link since the engine was opened. */
    public final long totalBytes;

    SyncStatus(long[] v) {
        captured = v[0];
        uploading = v[1];
        committed = v[2];
        quarantined = v[3];
        purged = v[4];
        pendingBytes = v[5];
        syncing = v[6] != 0;
        registered = v[7] != 0;
        activatedUntil = v[8] == 0 ? null : Instant.ofEpochSecond(v[8]);
        network = NetworkType.of(v[9]);
        meteredBytes = v[10];
        totalBytes = v[11];
        policy = new NetworkPolicy(v[12] != 0, v[13] < 0 ? NetworkPolicy.UNLIMITED : v[13]);
    }
}
