// One event of the engine: a capture's state change, a sync starting, waiting or finishing.
package mx.ine.apoyo.sync;

/**
 * Something the app may show. {@link #type()} is "capture", "sync_started", "sync_waiting" or
 * "sync_finished"; capture events carry the capture's id and new state ("captured",
 * "uploading", "committed", "purged", "quarantined"). {@link #json()} has every detail (why a
 * sync waits, the next attempt, the report). No personal data.
 */
public final class SyncEvent {
    private final String type;
    private final String captureId;
    private final String state;
    private final String json;

    SyncEvent(String type, String captureId, String state, String json) {
        this.type = type;
        this.captureId = captureId;
        this.state = state;
        this.json = json;
    }

    public String type() { return type; }
    /** The capture's id for capture events, else null. */
    public String captureId() { return captureId; }
    /** The capture's new state for capture events, else null. */
    public String state() { return state; }
    public String json() { return json; }

    @Override
    public String toString() {
        return json;
    }
}
