// The trust material INE ships inside the app: the endpoint's X25519 key, its CA and pins.
package mx.ine.apoyo.sync;

/**
 * What INE provisions into the app (docs/protocol.md §10): the endpoint's public key, to which
 * every capture's data key is sealed, and for {@code https} endpoints the CA certificate (PEM)
 * and/or pinned SHA-256 digests of the endpoint's SubjectPublicKeyInfo. TLS is verified by the
 * library against these, not by the platform's trust store.
 */
public final class Provisioning {
    final byte[] endpointPublicKey;
    final byte[] caPem;
    final byte[] pins;

    /** @param endpointPublicKey INE's X25519 public key, 32 bytes */
    public Provisioning(byte[] endpointPublicKey) {
        this(endpointPublicKey, null, null);
    }

    /**
     * @param caPem the endpoint's CA (PEM), or null
     * @param pins 32-byte SPKI digests back to back, or null
     */
    public Provisioning(byte[] endpointPublicKey, byte[] caPem, byte[] pins) {
        this.endpointPublicKey = endpointPublicKey;
        this.caPem = caPem;
        this.pins = pins;
    }
}
