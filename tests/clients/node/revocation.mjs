// openid-client 6, unmodified, as a resource server and a client use it against the service:
//   node revocation.mjs <base URL> <machine client id> <secret> <app client id> <app secret> <scope>
// - the machine user: discovery (OpenID Connect's document), client credentials, then RFC 7009
//   revocation of its own token, by client_secret_basic and by client_secret_post;
// - the API application: discovery by RFC 8414's document, RFC 7662 introspection, and revocation
//   of a token meant for its project.
// Prints one JSON object of what it saw; a step that fails is reported, not thrown.
import * as oidc from "openid-client";

const [base, clientId, secret, appId, appSecret, scope] = process.argv.slice(2);
const seen = {};
const insecure = { execute: [oidc.allowInsecureRequests] };

async function step(name, work) {
  try {
    seen[name] = await work();
  } catch (error) {
    seen[name] = { error: String(error && error.message ? error.message : error), code: error?.code };
  }
}

const byBasic = await oidc.discovery(new URL(base), clientId, secret, oidc.ClientSecretBasic(secret), insecure);
const byPost = await oidc.discovery(new URL(base), clientId, secret, oidc.ClientSecretPost(secret), insecure);
const app = await oidc.discovery(new URL(base), appId, appSecret, oidc.ClientSecretBasic(appSecret), {
  ...insecure,
  algorithm: "oauth2", // RFC 8414: /.well-known/oauth-authorization-server
});
seen.revocationEndpoint = app.serverMetadata().revocation_endpoint;

async function active(token) {
  return (await oidc.tokenIntrospection(app, token)).active;
}

for (const [name, config] of [["basic", byBasic], ["post", byPost]]) {
  await step(name, async () => {
    const { access_token: token } = await oidc.clientCredentialsGrant(config, { scope });
    const before = await active(token);
    await oidc.tokenRevocation(config, token, { token_type_hint: "access_token" });
    return { before, after: await active(token) };
  });
}
await step("introspected", async () => {
  const { access_token: token } = await oidc.clientCredentialsGrant(byBasic, { scope });
  const claims = await oidc.tokenIntrospection(app, token);
  return { active: claims.active, sub: claims.sub, clientId: claims.client_id, aud: claims.aud };
});
await step("byApplication", async () => {
  const { access_token: token } = await oidc.clientCredentialsGrant(byBasic, { scope });
  await oidc.tokenRevocation(app, token);
  return await active(token);
});
await step("unknown", async () => {
  await oidc.tokenRevocation(byBasic, "no-such-token");
  return "revoked";
});
await step("wrongSecret", async () => {
  const wrong = await oidc.discovery(new URL(base), clientId, "x", oidc.ClientSecretBasic("x"), insecure);
  await oidc.tokenRevocation(wrong, "no-such-token");
  return "revoked";
});
console.log(JSON.stringify(seen));
