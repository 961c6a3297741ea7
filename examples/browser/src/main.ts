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
