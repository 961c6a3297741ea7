"""Generates the OpenAPI 3 document of the JSON API from the descriptor set Envoy transcodes with.

Paths, methods and bodies come from the google.api.http bindings; schemas follow the proto3 JSON
mapping Envoy prints (lowerCamelCase names, 64-bit integers as strings, Timestamps as RFC 3339,
enums by name, every primitive field present). Errors are the google.rpc.Status body. The token
endpoint and discovery document, which are not RPCs, are described by hand at the end.
"""

import json
import re
import sys
from pathlib import Path
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor_pb2 import FieldDescriptorProto as Field

from server.domain.audit import MAX_TYPE_LENGTH
from server.domain.paging import MAX_PAGE_SIZE
from server.domain.permissions import ANY_CALLER, ROLES
from server.domain.scopes import PROJECT_AUDIENCE, ROLE
from server.domain.validation import MAX_DESCRIPTION_LENGTH, MAX_NAME_LENGTH
from server.limits import MAX_ID_LENGTH, MAX_PAGE_TOKEN_LENGTH, MAX_USER_NAME_LENGTH
from server.transport.methods import permission_of
from server.transport.oauth import ORGANISATION_SCOPE, SUPPORTED_SCOPES

ROOT = Path(__file__).resolve().parent.parent
DESCRIPTOR_SET = ROOT / "generated" / "machinesecrets.binpb"
OUTPUT = ROOT / "generated" / "openapi.json"
SERVICES = (
    "machinesecrets.v1.UserService",
    "machinesecrets.v1.OrgService",
    "machinesecrets.v1.AuditService",
    "zitadel.management.v1.ManagementService",
    "zitadel.user.v2.UserService",
    "zitadel.org.v2.OrganizationService",
)

# What any RPC can answer through Envoy's transcoder (the code's HTTP status, or Envoy's own).
COMMON_ERRORS = {
    "400": "Invalid argument, or a request Envoy could not read (not JSON, unknown field or parameter)",
    "401": "No token, a malformed authorization header, or an unknown or expired token",
    "403": "The permission is missing in the organisation, or the organisation does not exist",
    "429": "The headers are larger than 16 KiB",
    "431": "The headers are larger than Envoy's limit (128 KiB)",
    "500": "Internal error",
    "503": "The store is unavailable",
    "504": "The request did not arrive within MS_REQUEST_READ_TIMEOUT",
}
BODY_ERRORS = {"413": "The body is larger than 64 KiB"}
USER_NOT_FOUND = {"404": "No such user in the context organisation"}
ABORTED = {"409": "Aborted: a concurrent write won and the retries ran out"}
CREDENTIAL_ERRORS = {
    **USER_NOT_FOUND,
    **ABORTED,
    "400": "Invalid argument; the user is not a machine user, or has no secret to remove",
    "403": "The permission is missing in the organisation, the organisation does not exist, or the user"
    " holds permissions the caller does not hold",
}
USER_ERRORS = {
    **USER_NOT_FOUND,
    **ABORTED,
    "400": "Invalid argument; the user is (or is not) deactivated already, or it is the last active"
    " IAM_OWNER",
    "403": CREDENTIAL_ERRORS["403"],
}
NAME_TAKEN = {"409": "The user name is taken"}
NEW_SECRET_ERRORS = {
    **CREDENTIAL_ERRORS,
    "400": "Invalid argument (an expiration date or grace period beyond the organisation's secret"
    " policy names the limit); the user is not a machine user; SECRET_LIMIT_REACHED",
}
NEW_KEY_ERRORS = {
    **CREDENTIAL_ERRORS,
    "400": "Invalid argument (a public key that is not an RSA >= 2048 or EC P-256 public key in PEM,"
    " an expiration date in the past or beyond the organisation's maxLifetime); the user is not a"
    " machine user; KEY_LIMIT_REACHED",
}
KEY_READ_ERRORS = {**USER_NOT_FOUND, "400": "Invalid argument; the user is not a machine user"}
KEY_GONE_ERRORS = {**CREDENTIAL_ERRORS, "404": "No such user, or no such key of the user"}
PROJECT_NOT_FOUND = {"404": "No such project in the context organisation"}
PROJECT_WRITE_ERRORS = {**PROJECT_NOT_FOUND, **ABORTED, "400": "Invalid argument"}
METADATA_WRITE_ERRORS = {
    **USER_ERRORS,
    "400": "Invalid argument (a key over 200 characters, an empty value or one over 1024 bytes,"
    " more than 20 keys); METADATA_LIMIT: the user would hold more than 20 keys",
    "404": "No such user, or (removing) no such key of the user",
}
METADATA_READ_ERRORS = {**USER_NOT_FOUND, "400": "Invalid argument"}
# Each RPC's own answers, beside the common ones: only what it can answer, so that a test of
# status conformance means something.
METHOD_ERRORS: dict[str, dict[str, str]] = {
    "AddSecret": CREDENTIAL_ERRORS,
    "RemoveSecret": CREDENTIAL_ERRORS,
    "GenerateMachineSecret": CREDENTIAL_ERRORS,
    "RemoveMachineSecret": CREDENTIAL_ERRORS,
    "AddPersonalAccessToken": CREDENTIAL_ERRORS,
    "CreateSecret": NEW_SECRET_ERRORS,
    "RotateSecret": NEW_SECRET_ERRORS,
    "ListSecrets": {**USER_NOT_FOUND, "400": "Invalid argument; the user is not a machine user"},
    "DeleteSecret": {**CREDENTIAL_ERRORS, "404": "No such user, or no such secret of the user"},
    "AddKey": NEW_KEY_ERRORS,
    "AddMachineKey": NEW_KEY_ERRORS,
    "ListKeys": KEY_READ_ERRORS,
    "ListMachineKeys": KEY_READ_ERRORS,
    "GetMachineKeyByIDs": {**KEY_READ_ERRORS, "404": "No such user, or no such key of the user"},
    "RemoveKey": KEY_GONE_ERRORS,
    "RemoveMachineKey": KEY_GONE_ERRORS,
    **dict.fromkeys(
        (
            "SetUserMetadata",
            "BulkSetUserMetadata",
            "RemoveUserMetadata",
            "BulkRemoveUserMetadata",
            "DeleteUserMetadata",
        ),
        METADATA_WRITE_ERRORS,
    ),
    "ListUserMetadata": METADATA_READ_ERRORS,
    "GetUserMetadata": {**METADATA_READ_ERRORS, "404": "No such user, or no such key of the user"},
    "GetSecretPolicy": {},
    "SetSecretPolicy": {**ABORTED, "400": "Invalid argument: a limit out of its range"},
    "AddTrustedIssuer": {
        **ABORTED,
        "400": "Invalid argument (an issuer that is not an https URL, a jwks that is not a JWKS)",
        "409": "The organisation trusts this issuer already",
    },
    "ListTrustedIssuers": {},
    "RemoveTrustedIssuer": {**ABORTED, "404": "No such trusted issuer of the organisation"},
    "AddFederatedCredential": {
        **CREDENTIAL_ERRORS,
        "400": "Invalid argument (an issuer the organisation does not trust, a claim name without a"
        " value); the user is not a machine user",
    },
    "ListFederatedCredentials": KEY_READ_ERRORS,
    "RemoveFederatedCredential": {
        **CREDENTIAL_ERRORS,
        "404": "No such user, or no such federated credential of the user",
    },
    "GetUserByID": USER_NOT_FOUND,
    "ListUsers": {"400": "Invalid argument: a page size out of 0 to 100, a page token of another query"},
    "ListOrganizations": {
        "400": "Invalid argument: a page size out of 0 to 100, a page token of another list"
    },
    "AddMachineUser": NAME_TAKEN,
    "UpdateMachineUser": {
        **CREDENTIAL_ERRORS,
        **ABORTED,
        "400": "Invalid argument; the user is not a machine user",
    },
    "UpdateMachine": {
        **CREDENTIAL_ERRORS,
        **ABORTED,
        "400": "Invalid argument; the user is not a machine user",
    },
    "CreateWebKey": {**ABORTED, "400": "Invalid argument: a key type, size or curve not served"},
    "ActivateWebKey": {
        **ABORTED,
        "404": "No such web key",
        "400": "Invalid argument; the key signed before and was superseded",
    },
    "DeleteWebKey": {
        **ABORTED,
        "404": "No such web key",
        "400": "Invalid argument; the key is active, or scheduled to sign",
    },
    "ListWebKeys": {},
    "AddHumanUser": NAME_TAKEN,
    "ListPersonalAccessTokens": {**USER_NOT_FOUND, "400": "Invalid argument; the user is not a machine user"},
    "RemovePersonalAccessToken": {**CREDENTIAL_ERRORS, "404": "No such user, or no such token of the user"},
    "DeactivateUser": USER_ERRORS,
    "ReactivateUser": USER_ERRORS,
    "RemoveUser": USER_ERRORS,
    "DeleteUser": USER_ERRORS,
    "AddOrganization": {},
    "CreateUser": NAME_TAKEN,
    "GetProjectByID": {**PROJECT_NOT_FOUND, "400": "Invalid argument"},
    "GetProject": {**PROJECT_NOT_FOUND, "400": "Invalid argument"},
    "ListProjects": {},
    "AddProject": {"400": "Invalid argument"},
    "RemoveProject": PROJECT_WRITE_ERRORS,
    "ListProjectRoles": {**PROJECT_NOT_FOUND, "400": "Invalid argument"},
    "AddProjectRole": {**PROJECT_WRITE_ERRORS, "409": "The project has a role with this key"},
    "RemoveProjectRole": {**PROJECT_WRITE_ERRORS, "404": "No such project, or no such role of it"},
    "ListApps": {**PROJECT_NOT_FOUND, "400": "Invalid argument"},
    "AddAPIApp": PROJECT_WRITE_ERRORS,
    "AddApiApp": PROJECT_WRITE_ERRORS,
    "RemoveApp": {**PROJECT_WRITE_ERRORS, "404": "No such project, or no such application of it"},
    "RegenerateAPIClientSecret": {
        **PROJECT_WRITE_ERRORS,
        "404": "No such project, or no such application of it",
    },
    "RegenerateApiAppSecret": {
        **PROJECT_WRITE_ERRORS,
        "404": "No such project, or no such application of it",
    },
    "UpdateAPIAppConfig": {
        **PROJECT_WRITE_ERRORS,
        "400": "Invalid argument; the application has this auth method already",
        "404": "No such project, or no such application of it",
    },
    "UpdateApiAppAuthMethod": {
        **PROJECT_WRITE_ERRORS,
        "400": "Invalid argument; the application has this auth method already",
        "404": "No such project, or no such application of it",
    },
    "AddAppKey": {
        **PROJECT_WRITE_ERRORS,
        "400": "Invalid argument (a public key that is not an RSA or EC P-256 public key in PEM, an"
        " expiration date in the past or beyond the organisation's maxKeyLifetime); the application"
        " does not authenticate with keys; KEY_LIMIT_REACHED",
        "404": "No such project, or no such application of it",
        "429": "KEY_GENERATION_BUSY: the service is making as many key pairs as it will at once",
    },
    "ListAppKeys": {**PROJECT_NOT_FOUND, "400": "Invalid argument", "404": "No such project or application"},
    "GetAppKey": {
        **PROJECT_NOT_FOUND,
        "400": "Invalid argument",
        "404": "No such project or application, or no such key of it",
    },
    "RemoveAppKey": {
        **PROJECT_WRITE_ERRORS,
        "404": "No such project or application, or no such key of it",
    },
    "ListUserGrants": {},
    "AddUserGrant": {
        **ABORTED,
        "400": "Invalid argument; a role key the project does not have",
        "404": "No such user or project in the context organisation",
        "409": "The user has a grant of this project",
    },
    "RemoveUserGrant": {**ABORTED, "400": "Invalid argument", "404": "No such grant of the user"},
    # With admins: each is an existing user the caller may read, granted only roles it holds.
    "OrganizationService.AddOrganization": {
        **USER_NOT_FOUND,
        "403": "Only an IAM_OWNER creates organisations",
    },
    "RemoveOrgMember": {
        **ABORTED,
        "400": "Invalid argument; the member is the last active IAM_OWNER",
        "403": "The permission is missing in the organisation, the organisation does not exist, or the"
        " member holds permissions there the caller does not hold",
        "404": "The user is not a member of the organisation",
    },
    "ListEvents": {
        "400": "Invalid argument: a page size out of 0 to 100, a page token of other filters, an"
        " aggregate id without its type, an actor that is no id, until not after since",
    },
    "ListUserEvents": {
        **USER_NOT_FOUND,
        "400": "Invalid argument: a user id that is no id, a page size out of 0 to 100, a page token"
        " of another list",
    },
    "GetMe": {},
    "GetMyUser": {},
    "ListMyZitadelPermissions": {},
    "ListOrgMembers": {
        "400": "Invalid argument: a page size out of 0 to 100, a page token of another list, a user id"
        " that is no id"
    },
    "ManagementService.ListOrgMembers": {
        "400": "Invalid argument: a limit over 100, a user id that is no id, a query other than user_id_query"
    },
    "AddOrgMember": {
        **USER_NOT_FOUND,
        "403": "The permission is missing in the organisation, the organisation does not exist, or a role"
        " the caller does not hold",
        "409": "The user is a member already, or a concurrent write won",
    },
}
SCALARS: dict[int, dict[str, Any]] = {
    Field.TYPE_STRING: {"type": "string"},
    Field.TYPE_BOOL: {"type": "boolean"},
    Field.TYPE_INT32: {"type": "integer", "format": "int32"},
    Field.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    Field.TYPE_INT64: {"type": "string", "format": "int64"},
    Field.TYPE_UINT64: {"type": "string", "format": "uint64"},
    Field.TYPE_BYTES: {"type": "string", "format": "byte"},
    Field.TYPE_DOUBLE: {"type": "number"},
    Field.TYPE_FLOAT: {"type": "number"},
}
WELL_KNOWN = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"},
    # An event's payload, as ListEvents shows it: text, lists of text, or null.
    ".google.protobuf.Struct": {"type": "object"},
}
ID = {"type": "string", "pattern": "^[1-9][0-9]{0,18}$", "maxLength": MAX_ID_LENGTH}
NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}
# The rules the domain checks (server/domain/validation.py), so that clients and generated tests
# know them. Keyed by the JSON name of a request field or path parameter.
REQUEST_RULES: dict[str, dict[str, Any]] = {
    "user_id": ID,
    "userId": ID,
    "id": ID,
    "userName": {"type": "string", "minLength": 1, "maxLength": MAX_USER_NAME_LENGTH, "pattern": "^[^\\s]+$"},
    "userNamePrefix": {"type": "string", "maxLength": MAX_USER_NAME_LENGTH},
    "pageToken": {"type": "string", "maxLength": MAX_PAGE_TOKEN_LENGTH},
    "name": NAME,
    "displayName": NAME,
    "description": {"type": "string", "maxLength": MAX_DESCRIPTION_LENGTH},
    "email": {"type": "string", "format": "email", "maxLength": MAX_NAME_LENGTH},
    "roles": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": sorted(ROLES)}},
    "pageSize": {"type": "integer", "format": "int32", "minimum": 0, "maximum": MAX_PAGE_SIZE},
    # ListEvents' filters (server/domain/audit.py).
    "aggregateType": {"type": "string", "maxLength": MAX_TYPE_LENGTH},
    "aggregateId": {"type": "string", "maxLength": MAX_ID_LENGTH},
    "actorUserId": ID,
    "eventType": {"type": "string", "maxLength": MAX_TYPE_LENGTH},
    "afterPosition": {"type": "string", "format": "int64", "pattern": "^[0-9]{1,18}$"},
}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class Generator:
    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.services: list[tuple[str, descriptor_pb2.ServiceDescriptorProto]] = []
        for file in files.file:
            self._add_messages(f".{file.package}", file.message_type)
            for enum in file.enum_type:
                self.enums[f".{file.package}.{enum.name}"] = enum
            for service in file.service:
                if f"{file.package}.{service.name}" in SERVICES:
                    self.services.append((file.package, service))
        self.schemas: dict[str, Any] = {}

    def _add_messages(self, prefix: str, messages: Any) -> None:
        """Every message by its full name, nested ones too."""
        for message in messages:
            self.messages[f"{prefix}.{message.name}"] = message
            self._add_messages(f"{prefix}.{message.name}", message.nested_type)

    def ref(self, type_name: str) -> dict[str, Any]:
        if type_name in WELL_KNOWN:
            return WELL_KNOWN[type_name]
        # The native API's types by their short names; ZITADEL's by their full ones (both have a User).
        short = type_name.rsplit(".", 1)[1] if type_name.startswith(".machinesecrets.") else type_name[1:]
        if short not in self.schemas:
            self.schemas[short] = {}  # reserve the name: messages may refer to each other
            if type_name in self.enums:
                self.schemas[short] = {
                    "type": "string",
                    "enum": [v.name for v in self.enums[type_name].value],
                }
            else:
                self.schemas[short] = self.object(self.messages[type_name], exclude=())
        return {"$ref": f"#/components/schemas/{short}"}

    def object(
        self, message: descriptor_pb2.DescriptorProto, exclude: tuple[str, ...], request: bool = False
    ) -> dict[str, Any]:
        properties = {}
        for field in message.field:
            if field.name in exclude:
                continue
            if request and camel(field.name) in REQUEST_RULES:
                schema = dict(REQUEST_RULES[camel(field.name)])
            elif field.type in (Field.TYPE_MESSAGE, Field.TYPE_ENUM):
                schema = self.ref(field.type_name)
            else:
                schema = dict(SCALARS[field.type])
            if field.label == Field.LABEL_REPEATED:
                schema = {"type": "array", "items": schema}
            properties[camel(field.name)] = schema
        return {"type": "object", "properties": properties, "additionalProperties": False}

    def document(self) -> dict[str, Any]:
        paths: dict[str, Any] = {}
        for package, service in self.services:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in [rule, *rule.additional_bindings]:
                    verb = binding.WhichOneof("pattern")
                    path = getattr(binding, verb)
                    paths.setdefault(path, {})[verb] = self.operation(
                        package, service.name, method, path, binding.body
                    )
        self.schemas["Status"] = {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "integer", "description": "the google.rpc.Code"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object", "required": ["@type"],
                            "properties": {"@type": {"type": "string"}}}},
            },
        }  # fmt: skip
        paths.update(oauth_paths())
        self.schemas.update(oauth_schemas())
        return {
            "openapi": "3.0.3",
            "info": {
                "title": "machine-secrets",
                "version": "v1",
                "description": "Client secrets for machine users, and the OAuth2 client-credentials grant. "
                "JSON through Envoy's gRPC-JSON transcoder; the same calls answer over gRPC and "
                "grpc-web.",
            },
            "paths": dict(sorted(paths.items())),
            "components": {
                "schemas": dict(sorted(self.schemas.items())),
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                    "basic": {"type": "http", "scheme": "basic"}},
                "parameters": {"orgid": {"name": "x-zitadel-orgid", "in": "header", "required": False,
                               "description": "The organisation to act in; the caller's own when absent.",
                               "schema": {"type": "string"}}},
            },
        }  # fmt: skip

    def operation(self, package: str, service: str, method: Any, path: str, body: str) -> dict[str, Any]:
        request = self.messages[method.input_type]
        in_path = tuple(part[1:-1] for part in path.split("/") if part.startswith("{"))
        parameters: list[dict[str, Any]] = [{"$ref": "#/components/parameters/orgid"}]
        parameters += [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": REQUEST_RULES.get(name, {"type": "string"}),
            }
            for name in in_path
        ]
        if not body:  # the request's other fields, as query parameters
            fields = self.object(request, exclude=in_path, request=True)["properties"]
            parameters += [
                {"name": name, "in": "query", "required": False, "schema": schema}
                for name, schema in fields.items()
            ]
        own = METHOD_ERRORS.get(f"{service}.{method.name}", METHOD_ERRORS.get(method.name))
        assert own is not None, f"METHOD_ERRORS names no answers of {service}.{method.name}"
        errors = {**COMMON_ERRORS, **(BODY_ERRORS if body else {}), **own}
        permission = permission_of(method.options)
        operation: dict[str, Any] = {
            "operationId": f"{service}_{method.name}",
            "tags": [service],
            "description": "Any authenticated caller; `x-zitadel-orgid` is not read."
            if permission == ANY_CALLER
            else f"Needs `{permission}` in the context organisation.",
            "x-permission": permission,
            "security": [{"bearer": []}],
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK",
                        "content": {"application/json": {"schema": self.ref(method.output_type)}}},
                **{code: {"description": errors[code], "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Status"}}}} for code in sorted(errors)},
            },
        }  # fmt: skip
        if body == "*":
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": self.object(request, exclude=in_path, request=True)}
                },
            }
        return operation


# The scopes the token endpoint accepts (server/transport/oauth.py), as a pattern.
SCOPE_PATTERN = (
    "^ *(("
    + "|".join(re.escape(scope) for scope in SUPPORTED_SCOPES)
    + "|"
    + ORGANISATION_SCOPE.pattern
    + "|"
    + PROJECT_AUDIENCE.pattern
    + "|"
    + ROLE.pattern
    + ") *)*$"
)


def oauth_paths() -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}
    return {
        "/oauth/v2/token": {"post": {
            "operationId": "OAuth_Token",
            "tags": ["OAuth"],
            "description": "RFC 6749 §4.4 client credentials; authenticate by HTTP Basic or by form fields.",
            "security": [{"basic": []}, {}],
            "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["grant_type"],
                "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                               "scope": {"type": "string", "pattern": SCOPE_PATTERN,
                                         "description": "api, and the scopes ZITADEL clients send"},
                               "client_id": {"type": "string"},
                               "client_secret": {"type": "string"}}},
                # A request that works with HTTP Basic; schemathesis sends it first.
                "example": {"grant_type": "client_credentials", "scope": "api"}}}},
            "responses": {
                "200": {"description": "A token", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/OAuthToken"}}}},
                "400": {"description": "invalid_request, unsupported_grant_type or invalid_scope",
                        "content": error},
                "401": {"description": "invalid_client", "content": error},
                "405": {"description": "not POST", "content": error},
                "408": {"description": "invalid_request: no whole body within MS_REQUEST_READ_TIMEOUT",
                        "content": error},
                "413": {"description": "the body is too large", "content": error},
                "429": {"description": "slow_down: too many failed authentications", "content": error},
                "500": {"description": "server_error", "content": error},
                "503": {"description": "temporarily_unavailable", "content": error},
            },
        }},
        "/oauth/v2/introspect": {"post": {
            "operationId": "OAuth_Introspect",
            "tags": ["OAuth"],
            "description": "RFC 7662 token introspection, by an API application (Basic, form fields, or"
            " private_key_jwt: a client assertion its key signed, RFC 7523 §2.2).",
            "security": [{"basic": []}, {}],
            "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["token"],
                "properties": {"token": {"type": "string"}, "token_type_hint": {"type": "string"},
                               "client_id": {"type": "string"}, "client_secret": {"type": "string"},
                               "client_assertion_type": {"type": "string"},
                               "client_assertion": {"type": "string"}}},
                "example": {"token": "a-token"}}}},
            "responses": {
                "200": {"description": "{active: false}, or the claims", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["active"],
                               "properties": {"active": {"type": "boolean"}}}}}},
                "400": {"description": "invalid_request", "content": error},
                "401": {"description": "invalid_client", "content": error},
                "405": {"description": "not POST", "content": error},
                "408": {"description": "invalid_request: no whole body within MS_REQUEST_READ_TIMEOUT",
                        "content": error},
                "413": {"description": "the body is too large", "content": error},
                "429": {"description": "slow_down: too many failed authentications", "content": error},
                "500": {"description": "server_error", "content": error},
                "503": {"description": "temporarily_unavailable", "content": error},
            },
        }},
        "/oauth/v2/revoke": {"post": {
            "operationId": "OAuth_Revoke",
            "tags": ["OAuth"],
            "description": "RFC 7009 token revocation, by the client that holds the token (Basic, form"
                           " fields or private_key_jwt) or an API application of its audience.",
            "security": [{"basic": []}, {}],
            "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["token"],
                "properties": {"token": {"type": "string"}, "token_type_hint": {"type": "string"},
                               "client_id": {"type": "string"}, "client_secret": {"type": "string"}}},
                "example": {"token": "a-token"}}}},
            "responses": {
                "200": {"description": "{}, whether anything was revoked or not (§2.2)",
                        "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": {"description": "invalid_request", "content": error},
                "401": {"description": "invalid_client", "content": error},
                "405": {"description": "not POST", "content": error},
                "408": {"description": "invalid_request: no whole body within MS_REQUEST_READ_TIMEOUT",
                        "content": error},
                "413": {"description": "the body is too large", "content": error},
                "429": {"description": "slow_down: too many failed authentications", "content": error},
                "500": {"description": "server_error", "content": error},
                "503": {"description": "temporarily_unavailable", "content": error},
            },
        }},
        "/.well-known/openid-configuration": {"get": {
            "operationId": "OAuth_Discovery",
            "tags": ["OAuth"],
            "responses": {"200": {"description": "Provider metadata", "content": {"application/json": {
                "schema": {"type": "object", "required": ["issuer", "token_endpoint"]}}}}},
        }},
        "/.well-known/oauth-authorization-server": {"get": {
            "operationId": "OAuth_Metadata",
            "tags": ["OAuth"],
            "description": "RFC 8414's name for the discovery document: the same document.",
            "responses": {"200": {"description": "Authorization server metadata", "content": {
                "application/json": {"schema": {"type": "object",
                                                "required": ["issuer", "token_endpoint"]}}}}},
        }},
    }  # fmt: skip


def oauth_schemas() -> dict[str, Any]:
    return {
        "OAuthToken": {"type": "object", "required": ["access_token", "token_type", "expires_in", "scope"],
                       "properties": {"access_token": {"type": "string"}, "token_type": {"type": "string"},
                                      "expires_in": {"type": "integer"}, "scope": {"type": "string"}}},
        "OAuthError": {"type": "object", "required": ["error"],
                       "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}}},
    }  # fmt: skip


def generate() -> str:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    return json.dumps(Generator(files).document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT
    target.write_text(generate())
