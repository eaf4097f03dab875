// Request matching shared by header rules and routes: every condition given must hold.
import { RequestMatch } from "./config";
import { RequestView } from "./request";

export function matches(match: RequestMatch, request: RequestView): bool {
  if (match.methods.length > 0 && !match.methods.includes(request.method())) return false;
  const path = match.path;
  if (path !== null && !path.matches(request.path())) return false;
  const authority = match.authority;
  if (authority !== null && !authority.matches(request.authority())) return false;
  for (let i = 0; i < match.headers.length; i++) {
    const condition = match.headers[i];
    if (!condition.matcher.matches(request.header(condition.name))) return false;
  }
  for (let i = 0; i < match.query.length; i++) {
    const condition = match.query[i];
    if (!condition.matcher.matches(request.query(condition.name))) return false;
  }
  return true;
}
