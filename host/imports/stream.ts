// Stream control: continuing or closing a direction, and answering the stream locally.
import { GRPC_STATUS_MAX, Status, StreamType } from "../abi.ts";
import { decodePairs } from "../headers.ts";
import { u32 } from "../memory.ts";
import { abiArea } from "./calls.ts";

const WHITESPACE = /[ \t\f\v\n\r]/g;

export const stream = abiArea(
  [
    "proxy_continue_stream",
    "proxy_close_stream",
    "proxy_continue_request",
    "proxy_continue_response",
    "proxy_send_local_response",
  ],
  (vm, abi) => ({
    proxy_continue_stream(type: number) {
      return abi.context().continueStream(abi.streamType(type));
    },

    proxy_close_stream(type: number) {
      return abi.context().closeStream(abi.streamType(type));
    },

    proxy_continue_request() {
      return abi.context().continueStream(StreamType.Request);
    },

    proxy_continue_response() {
      return abi.context().continueStream(StreamType.Response);
    },

    proxy_send_local_response(
      statusCode: number,
      detailsPtr: number,
      detailsSize: number,
      bodyPtr: number,
      bodySize: number,
      headersPtr: number,
      headersSize: number,
      grpcStatus: number,
    ) {
      const details = abi.string(detailsPtr, detailsSize);
      const body = abi.bytes(bodyPtr, bodySize);
      const headerData = abi.bytes(headersPtr, headersSize);
      const grpc = grpcStatus | 0; // SDKs pass -1 for "no gRPC status"
      abi.context().sendLocalResponse({
        status: u32(statusCode),
        details: details.replace(WHITESPACE, "_"),
        body,
        headers: headerData.byteLength === 0 ? [] : (decodePairs(headerData) ?? []),
        ...(grpc >= 0 && grpc <= GRPC_STATUS_MAX ? { grpcStatus: grpc } : {}),
      });
      vm.stopNextIteration = true;
      return Status.Ok;
    },
  }),
);
