// A grpc-web client of machine-secrets with connect-es: copy it into your frontend.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb";
import { UserService } from "./gen/machinesecrets/v1/user_service_pb";

const field = (id: string) => document.getElementById(id) as HTMLInputElement;
const show = (id: string, text: string) => {
  (document.getElementById(id) as HTMLOutputElement).textContent = text;
};

// Prefill from the fragment (#api=...&token=...): it never reaches a server log.
const fragment = new URLSearchParams(location.hash.slice(1));
for (const name of ["api", "token"]) {
  const value = fragment.get(name);
  if (value) field(name).value = value;
}

function users() {
  const token = field("token").value.trim();
  const bearer: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  const transport = createGrpcWebTransport({ baseUrl: field("api").value.trim(), interceptors: [bearer] });
  return createClient(UserService, transport);
}

function clear() {
  for (const id of ["client-id", "client-secret", "sequence", "error"]) show(id, "");
}

function showError(error: unknown) {
  const connectError = ConnectError.from(error);
  if (connectError.code === Code.Unknown && connectError.cause instanceof TypeError) {
    // fetch itself failed: no answer the page may read. Most often CORS (the browser got the
    // answer and kept it from the page), else a wrong URL or a service that is down.
    show(
      "error",
      `2 Unknown: no answer reached this page. Probably refused by CORS: is this page's origin ` +
        `(${location.origin}) in MS_CORS_ORIGINS? Otherwise check the API base URL and that the service runs.`,
    );
    return;
  }
  const [info] = connectError.findDetails(ErrorInfoSchema);
  // The gRPC code number, its name, and the service's stable reason, e.g. "5 NotFound USER_NOT_FOUND".
  show("error", `${connectError.code} ${Code[connectError.code]} ${info?.reason ?? ""}`.trim());
}

field("create").addEventListener("click", async () => {
  clear();
  try {
    const client = users();
    const user = await client.addMachineUser({ userName: `browser-${crypto.randomUUID()}`, name: "Browser example" });
    const secret = await client.addSecret({ userId: user.userId });
    show("client-id", secret.clientId);
    show("client-secret", secret.clientSecret);
    show("sequence", String(secret.details?.sequence ?? ""));
  } catch (error) {
    showError(error);
  }
});

field("unknown").addEventListener("click", async () => {
  clear();
  try {
    await users().addSecret({ userId: "1" });
    show("error", "unexpected success");
  } catch (error) {
    showError(error);
  }
});
