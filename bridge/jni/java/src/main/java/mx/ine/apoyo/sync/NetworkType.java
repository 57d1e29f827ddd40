// The link the phone is on, as the app's connectivity callback reports it.
package mx.ine.apoyo.sync;

/** The link the phone is on now; see {@link SyncEngine#setNetwork}. */
public enum NetworkType {
    /** No usable network: nothing is sent. */
    NONE(0),
    /** An unmetered Wi-Fi (or Ethernet) link. */
    WIFI(1),
    /** A cellular link: counted against the cellular allowance. */
    CELLULAR(2),
    /** Any other metered link (a hotspot, a metered Wi-Fi): counted like cellular. */
    METERED(3);

    final int value;

    NetworkType(int value) {
        this.value = value;
    }

    static NetworkType of(long value) {
        for (NetworkType t : values()) {
            if (t.value == value) {
                return t;
            }
        }
        return NONE;
    }
}
