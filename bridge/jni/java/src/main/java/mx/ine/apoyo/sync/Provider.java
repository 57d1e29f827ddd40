// Who validated the citizen's e-mail address at registration ("Registro ciudadano").
package mx.ine.apoyo.sync;

/** The identity provider that validated the e-mail address given to {@link SyncEngine#register}. */
public enum Provider {
    GOOGLE(0),
    FACEBOOK(1);

    final int value;

    Provider(int value) {
        this.value = value;
    }
}
