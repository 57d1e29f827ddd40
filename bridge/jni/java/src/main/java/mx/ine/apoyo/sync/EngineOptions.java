// The engine's settings an app may change: the disk reserve and who captures on this device.
package mx.ine.apoyo.sync;

/** Engine settings; {@code new EngineOptions()} is what an app wants. */
public final class EngineOptions {
    long diskReserveBytes = -1;
    String auxiliarId;

    /** Free bytes that must remain after a capture is written (default 64 MiB). */
    public EngineOptions diskReserveBytes(long bytes) {
        if (bytes < 0) {
            throw new IllegalArgumentException("diskReserveBytes must be >= 0");
        }
        this.diskReserveBytes = bytes;
        return this;
    }

    /** At create: the auxiliar's registration id (omit for the citizen's own phone). */
    public EngineOptions auxiliarId(String id) {
        this.auxiliarId = id;
        return this;
    }
}
