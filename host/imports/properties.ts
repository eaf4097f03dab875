// Properties: the layered attributes of the stream, plugin and host; set ones live on the stream.
import { Status } from "../abi.ts";
import { splitPath } from "../properties.ts";
import { abiArea } from "./calls.ts";

export const properties = abiArea(["proxy_get_property", "proxy_set_property"], (_vm, abi) => ({
  proxy_get_property(pathPtr: number, pathSize: number, ptrPtr: number, sizePtr: number) {
    const path = abi.string(pathPtr, pathSize);
    const trimmed = path.endsWith("\0") ? path.slice(0, -1) : path;
    if (trimmed === "") return Status.NotFound;
    const value = abi.context().property(splitPath(trimmed));
    if (!value) return Status.NotFound;
    return abi.returnBytes(value, ptrPtr, sizePtr);
  },

  proxy_set_property(pathPtr: number, pathSize: number, valuePtr: number, valueSize: number) {
    const path = abi.string(pathPtr, pathSize);
    const value = abi.bytes(valuePtr, valueSize);
    return abi.context().setProperty(path, value);
  },
}));
