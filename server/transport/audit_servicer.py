"""The handlers of machinesecrets.v1.AuditService: proto and the checked CallContext in, the
domain's audit queries (server/domain/audit.py), proto out. As servicers.py: the pipeline does
the rest."""

from dataclasses import asdict

from google.protobuf import struct_pb2
from machinesecrets.v1 import audit_service_pb2 as audit_pb

from server.domain.audit import AuditQueries, EventQuery, EventView
from server.domain.permissions import CallContext
from server.transport.conversions import time_of, timestamp


def event_proto(event: EventView) -> audit_pb.Event:
    payload = struct_pb2.Struct()
    payload.update(event.payload)
    return audit_pb.Event(
        position=event.position,
        aggregate_type=event.aggregate_type,
        aggregate_id=event.aggregate_id,
        sequence=event.sequence,
        event_type=event.event_type,
        resource_owner=event.resource_owner,
        creation_date=timestamp(event.created_at),
        payload=payload,
        actor=audit_pb.Actor(**asdict(event.actor)),  # the proto's fields are the Actor's
    )


def event_query(request: audit_pb.ListEventsRequest) -> EventQuery:
    return EventQuery(
        aggregate_type=request.aggregate_type,
        aggregate_id=request.aggregate_id,
        actor_user_id=request.actor_user_id,
        event_type=request.event_type,
        since=time_of(request, "since"),
        until=time_of(request, "until"),
        after_position=request.after_position,
    )


class AuditService:
    def __init__(self, audit: AuditQueries) -> None:
        self._audit = audit

    async def ListEvents(
        self, request: audit_pb.ListEventsRequest, ctx: CallContext
    ) -> audit_pb.ListEventsResponse:
        events, next_token = await self._audit.events(
            ctx, event_query(request), request.page_size, request.page_token
        )
        return audit_pb.ListEventsResponse(events=map(event_proto, events), next_page_token=next_token)

    async def ListUserEvents(
        self, request: audit_pb.ListUserEventsRequest, ctx: CallContext
    ) -> audit_pb.ListUserEventsResponse:
        events, next_token = await self._audit.user_events(
            ctx, request.user_id, request.page_size, request.page_token
        )
        return audit_pb.ListUserEventsResponse(events=map(event_proto, events), next_page_token=next_token)
