// HTTP calls: a root context calls an upstream; the answer arrives as proxy_on_http_call_response,
// and a failure is read with proxy_get_status.
import { Status } from "../abi.ts";
import { decodePairs, HeaderMap } from "../headers.ts";
import { u32 } from "../memory.ts";
import { abiArea } from "./calls.ts";

export const httpCall = abiArea(["proxy_http_call", "proxy_get_status"], (vm, abi) => ({
  proxy_http_call(
    upstreamPtr: number,
    upstreamSize: number,
    headersPtr: number,
    headersSize: number,
    bodyPtr: number,
    bodySize: number,
    trailersPtr: number,
    trailersSize: number,
    timeoutMs: number,
    tokenPtr: number,
  ) {
    const root = abi.context().root;
    const upstream = abi.string(upstreamPtr, upstreamSize);
    const headerData = abi.bytes(headersPtr, headersSize);
    const body = abi.bytes(bodyPtr, bodySize);
    const trailerData = abi.bytes(trailersPtr, trailersSize);
    abi.returnU32(tokenPtr, 0);
    if (!vm.httpCallHandler) return Status.Unimplemented;
    if (!root) return Status.BadArgument;
    const headers = new HeaderMap(decodePairs(headerData) ?? []);
    // Envoy insists on these three.
    if (!headers.has(":path") || !headers.has(":method") || !headers.has(":authority"))
      return Status.BadArgument;
    const token = root.startHttpCall({
      upstream,
      headers: headers.pairs(),
      body,
      trailers: decodePairs(trailerData) ?? [],
      timeoutMs: u32(timeoutMs),
    });
    return abi.returnU32(tokenPtr, token);
  },

  proxy_get_status(codePtr: number, ptrPtr: number, sizePtr: number) {
    const status = abi.context().root?.status ?? { code: 0, message: "" };
    abi.returnU32(codePtr, status.code);
    return abi.returnString(status.message, ptrPtr, sizePtr);
  },
}));
