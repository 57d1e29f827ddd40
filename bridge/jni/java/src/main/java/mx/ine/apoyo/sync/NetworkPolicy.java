// What the app allows the engine to do on which link: "Wi-Fi only" and a cellular byte cap.
package mx.ine.apoyo.sync;

/**
 * The network policy: send only over Wi-Fi, and/or at most so many bytes (both directions,
 * retries included, never overshot) over cellular or metered links from the moment it is set.
 */
public final class NetworkPolicy {
    /** No allowance limit. */
    public static final long UNLIMITED = -1;

    private final boolean wifiOnly;
    private final long cellularAllowanceBytes;

    /** @param cellularAllowanceBytes the cap, or {@link #UNLIMITED} */
    public NetworkPolicy(boolean wifiOnly, long cellularAllowanceBytes) {
        if (cellularAllowanceBytes < 0 && cellularAllowanceBytes != UNLIMITED) {
            throw new IllegalArgumentException("cellularAllowanceBytes must be >= 0 or UNLIMITED");
        }
        this.wifiOnly = wifiOnly;
        this.cellularAllowanceBytes = cellularAllowanceBytes;
    }

    public boolean wifiOnly() {
        return wifiOnly;
    }

    /** The cap in bytes, or {@link #UNLIMITED}. */
    public long cellularAllowanceBytes() {
        return cellularAllowanceBytes;
    }
}
