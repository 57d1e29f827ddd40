// A capture as the app builds it: the card fields read from the credential, the process, the
// model, the location, the collector, and the four images. Written to the native side as the
// JSON description of bridge/ffi/src/capture.rs plus the image bytes.
package mx.ine.apoyo.sync;

import java.util.Locale;

/**
 * One support captured for a process. Build with {@link #builder}; the engine validates it in
 * {@link SyncEngine#capture} (an {@link InvalidInputException} names the field that was wrong).
 */
public final class Capture {
    final String description;
    final byte[] front;
    final byte[] back;
    final byte[] selfie;
    final byte[] signature;

    private Capture(Builder b) {
        this.description = b.json();
        this.front = b.front;
        this.back = b.back;
        this.selfie = b.selfie;
        this.signature = b.signature;
    }

    /** A capture for {@code processId} of a credential of {@code model} ("C" to "H"). */
    public static Builder builder(String processId, String model) {
        return new Builder(processId, model);
    }

    /** Builds a {@link Capture}; images are JPEG or PNG bytes. */
    public static final class Builder {
        private final String processId;
        private final String model;
        private String claveElector;
        private Integer entidad;
        private Integer seccion;
        private Integer vigencia;
        private Integer numeroEmision;
        private String curp;
        private String ocr;
        private String cic;
        private double[] location;
        private String auxiliarId;
        private byte[] front;
        private byte[] back;
        private byte[] selfie;
        private byte[] signature;

        private Builder(String processId, String model) {
            this.processId = processId;
            this.model = model;
        }

        public Builder claveElector(String v) { this.claveElector = v; return this; }
        public Builder entidad(int v) { this.entidad = v; return this; }
        public Builder seccion(int v) { this.seccion = v; return this; }
        public Builder vigencia(int v) { this.vigencia = v; return this; }
        public Builder numeroEmision(int v) { this.numeroEmision = v; return this; }
        public Builder curp(String v) { this.curp = v; return this; }
        public Builder ocr(String v) { this.ocr = v; return this; }
        public Builder cic(String v) { this.cic = v; return this; }
        /** Who captured: an auxiliar's registration id (omit on the citizen's own phone). */
        public Builder auxiliarId(String v) { this.auxiliarId = v; return this; }

        /** Where it was captured (high-accuracy location); finite numbers only. */
        public Builder location(double lat, double lon, double accuracyMetres) {
            if (!Double.isFinite(lat) || !Double.isFinite(lon) || !Double.isFinite(accuracyMetres)) {
                throw new IllegalArgumentException("location values must be finite numbers");
            }
            this.location = new double[] {lat, lon, accuracyMetres};
            return this;
        }

        public Builder images(byte[] front, byte[] back, byte[] selfie, byte[] signature) {
            this.front = front;
            this.back = back;
            this.selfie = selfie;
            this.signature = signature;
            return this;
        }

        public Capture build() {
            return new Capture(this);
        }

        private String json() {
            StringBuilder s = new StringBuilder("{\"process_id\":").append(quote(processId));
            s.append(",\"model\":").append(quote(model)).append(",\"fields\":{");
            s.append("\"clave_elector\":").append(quote(claveElector));
            field(s, "entidad", entidad);
            field(s, "seccion", seccion);
            field(s, "vigencia", vigencia);
            field(s, "numero_emision", numeroEmision);
            if (curp != null) s.append(",\"curp\":").append(quote(curp));
            if (ocr != null) s.append(",\"ocr\":").append(quote(ocr));
            if (cic != null) s.append(",\"cic\":").append(quote(cic));
            s.append('}');
            if (location != null) {
                s.append(String.format(Locale.ROOT, ",\"location\":{\"lat\":%s,\"lon\":%s,\"accuracy_m\":%s}",
                        Double.toString(location[0]), Double.toString(location[1]),
                        Double.toString(location[2])));
            }
            if (auxiliarId != null) s.append(",\"auxiliar_id\":").append(quote(auxiliarId));
            return s.append('}').toString();
        }

        private static void field(StringBuilder s, String name, Integer v) {
            if (v != null) s.append(",\"").append(name).append("\":").append(v.intValue());
        }

        /** A JSON string (null stays null, which the engine refuses by the field's name). */
        static String quote(String v) {
            if (v == null) return "null";
            StringBuilder s = new StringBuilder(v.length() + 2).append('"');
            for (int i = 0; i < v.length(); i++) {
                char c = v.charAt(i);
                if (c == '"' || c == '\\') {
                    s.append('\\').append(c);
                } else if (c < 0x20) {
                    s.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
                } else {
                    s.append(c);
                }
            }
            return s.append('"').toString();
        }
    }
}
