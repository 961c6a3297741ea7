// Resource-server clients from npm, unmodified, introspecting with an application key file. Run by
// tests/test_zitadel_clients.py:
//   node app_keys.mjs <API base URL> <authority> <admin PAT> <unique suffix>
// The API base URL serves gRPC (Envoy); the authority serves discovery and the OAuth endpoints (Envoy,
// or the service's HTTP port).
// - @zitadel/node's management client: a project, an API application with
//   API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT, and its key file from AddAppKey (ListAppKeys, GetAppKey).
// - passport-zitadel's ZitadelIntrospectionStrategy in its JWT-profile mode, given that key file:
//   discovery, then introspection with a client assertion it signs (openid-client 5, jose 5).
// - @zitadel/node's Application, given that key file: the assertion its getSignedJwt() signs,
//   sent to the introspection endpoint as RFC 7523 §2.2 says.
// Prints one JSON object of what it saw; a step that fails is reported, not thrown.
import {
  createAccessTokenInterceptor,
  createManagementClient,
} from "@zitadel/node/dist/api/index.js";
import { Application } from "@zitadel/node/dist/credentials/index.js";
import { ZitadelIntrospectionStrategy } from "passport-zitadel";

const [api, authority, pat, suffix] = process.argv.slice(2);
const seen = {};

async function step(name, work) {
  try {
    seen[name] = await work();
  } catch (error) {
    seen[name] = { error: String(error && error.message ? error.message : error), code: error?.code };
  }
}

const admin = createManagementClient(api, createAccessTokenInterceptor(pat));
const { id: projectId } = await admin.addProject({ name: `node-app-keys-${suffix}` });
const app = await admin.addAPIApp({ projectId, name: "resource server", authMethodType: 1 }); // PRIVATE_KEY_JWT
seen.clientSecret = app.clientSecret;
const added = await admin.addAppKey({ projectId, appId: app.appId, type: 1 }); // KEY_TYPE_JSON
const keyFile = Buffer.from(added.keyDetails).toString("utf8");
const profile = JSON.parse(keyFile);
seen.keyFileFields = Object.keys(profile).sort();
seen.keyFileIds = profile.keyId === added.id && profile.appId === app.appId && profile.clientId === app.clientId;
seen.listed = (await admin.listAppKeys({ projectId, appId: app.appId })).result.map((k) => k.id);
seen.got = (await admin.getAppKey({ projectId, appId: app.appId, keyId: added.id })).key?.id === added.id;

// A machine user's access token meant for the project: what the resource server is handed.
const { userId } = await admin.addMachineUser({ userName: `node-app-keys-${suffix}`, name: "caller" });
const { clientId, clientSecret } = await admin.generateMachineSecret({ userId });
const issued = await fetch(`${authority}/oauth/v2/token`, {
  method: "POST",
  headers: { authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString("base64")}` },
  body: new URLSearchParams({
    grant_type: "client_credentials",
    scope: `openid urn:zitadel:iam:org:project:id:${projectId}:aud`,
  }),
});
const { access_token: accessToken } = await issued.json();

// passport-zitadel, as its README shows it, driven as passport drives a strategy: authenticate(req),
// then one of success, fail or error.
function passportAuthenticates(strategy, token) {
  return new Promise((resolve) => {
    const attempt = Object.create(strategy);
    attempt.success = (user) => resolve({ success: true, sub: user.sub, active: user.active });
    attempt.fail = (info) => resolve({ success: false, message: info?.message });
    attempt.error = (error) => resolve({ error: String(error?.message ?? error) });
    attempt.authenticate({ headers: { authorization: `Bearer ${token}` } });
  });
}
await step("passport", async () => {
  const strategy = await ZitadelIntrospectionStrategy.create({
    authority,
    authorization: { type: "jwt-profile", profile },
  });
  return {
    good: await passportAuthenticates(strategy, accessToken),
    // Its assertion is made once and reused for an hour (no jti): the second call is no replay.
    again: await passportAuthenticates(strategy, accessToken),
    dead: await passportAuthenticates(strategy, "not-a-token"),
  };
});

// @zitadel/node's Application: the assertion it signs, at the introspection endpoint.
await step("application", async () => {
  const application = Application.fromJsonString(keyFile);
  const assertion = await application.getSignedJwt(authority);
  const answer = await fetch(`${authority}/oauth/v2/introspect`, {
    method: "POST",
    body: new URLSearchParams({
      client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
      client_assertion: assertion,
      token: accessToken,
    }),
  });
  const claims = await answer.json();
  return { status: answer.status, active: claims.active, sub: claims.sub, aud: claims.aud };
});

// The key removed: the same strategy is refused at once.
await admin.removeAppKey({ projectId, appId: app.appId, keyId: added.id });
await step("removed", async () => {
  const strategy = await ZitadelIntrospectionStrategy.create({
    authority,
    authorization: { type: "jwt-profile", profile },
  });
  return await passportAuthenticates(strategy, accessToken);
});
seen.userId = userId;
seen.projectId = projectId;
console.log(JSON.stringify(seen));
