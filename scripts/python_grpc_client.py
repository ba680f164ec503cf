"""Builds one partition through a databuild service and prints its events, using stubs
generated from proto/databuild/v1/databuild.proto (see python-grpc-client.sh)."""

import sys

import grpc

import databuild_pb2 as pb
import databuild_pb2_grpc as rpc

addr, ref = sys.argv[1], sys.argv[2]
channel = grpc.insecure_channel(addr)
grpc.channel_ready_future(channel).result(timeout=10)
catalog = rpc.CatalogStub(channel)
service = rpc.DataBuildServiceStub(channel)

built = service.Build(pb.GraphBuildRequest(outputs=[pb.PartitionRef(str=ref)]), timeout=60)
print(f"built {ref}: {len(built.manifests)} manifests")

latest = catalog.GetLatestPartitionEvent(
    pb.GetLatestPartitionEventRequest(partition_ref=pb.PartitionRef(str=ref)), timeout=10
)
print(f"latest {pb.PartitionStatus.Name(latest.event.status)}")

events = catalog.StreamPartitionEvents(
    pb.StreamPartitionEventsRequest(
        filter=pb.EventStreamFilter(partition_refs=[pb.PartitionRef(str=ref)], since={"seconds": 0})
    ),
    timeout=30,
)
for event in events:
    print(f"event {pb.PartitionStatus.Name(event.status)} {event.partition_ref.str}")
    if event.status == pb.PARTITION_AVAILABLE:
        events.cancel()
        break
