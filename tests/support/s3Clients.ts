/**
 * Stand-ins for the two S3 clients the backup job runs: `aws` (listings, deletes, head-object)
 * and `curl` (scripts/node/lib.sh s3_request: every put, part, completion, abort and retention).
 * Both go first on PATH, record each call as the S3 operation it is (in aws-cli's spelling:
 * put-object, upload-part, create-multipart-upload, complete-multipart-upload,
 * abort-multipart-upload, put-object-retention, list-object-versions, delete-object, ...), the
 * key and the part number, run a test's bash `body` (which may fail the call, as below, or do
 * something first), then pass the call on to the real client and record its end.
 *
 * The body sees: `client` (aws or curl), `op`, `key`, `part`, `real` (the real binary) and the
 * call's own arguments ("$@"), and two ways to fail a call as the real client fails:
 *   s3_error STATUS CODE   the store answers STATUS with the S3 error CODE: curl writes the error
 *                          document to its --output file and the status to stdout (--write-out
 *                          '%{http_code}') and exits 0, as curl without --fail does; aws prints
 *                          "An error occurred (CODE) when calling the ... operation" and exits
 *                          254 (aws-cli v2's exit status for an error the service returned,
 *                          docs: "Return codes", awscli/topics/return-codes.rst)
 *   s3_connection_reset    the connection drops: curl exits 56 ("Failure when receiving data
 *                          from the peer", libcurl-errors.3 CURLE_RECV_ERROR) having written
 *                          "000" for the status; aws prints "Connection was closed" and exits
 *                          255 (return-codes.rst: "Command failed")
 * The curl stand-in reads the method from -X and the URL's query as lib.sh writes it (the S3 API
 * reference's request syntax: PUT ?partNumber&uploadId is UploadPart, POST ?uploads
 * CreateMultipartUpload, POST ?uploadId CompleteMultipartUpload, DELETE ?uploadId
 * AbortMultipartUpload, PUT ?retention PutObjectRetention).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { awsBinary } from "./s3Server";

export const curlBinary = "/usr/bin/curl";

export interface S3Call {
  client: "aws" | "curl";
  op: string;
  key: string;
  part: string;
  /** The client's arguments as it was called. */
  args: string[];
  /** The client's exit status, once the call ended (undefined while it runs or when killed). */
  status?: number;
  /** The position of the call's end among every start and end record (undefined while running). */
  endedAt?: number;
  startedAt: number;
}

export interface S3StandIn {
  /** PATH with both stand-ins first. */
  PATH: string;
  /** Every call, in the order they started. */
  calls(): S3Call[];
}

// Shared by both stand-ins: records "start" (tab-separated: start, client, op, key, part, args)
// and "end" (end, client, op, key, part, status) lines; defines s3_error and s3_connection_reset.
const prologue = (log: string, client: "aws" | "curl", real: string) => `#!/bin/bash
client=${client}
real=${real}
args=("$@")
op="" key="" part="" method="" url="" out="" headers=""
for ((i = 0; i < \${#args[@]}; i++)); do
  case "\${args[i]}" in
    s3api | s3) [[ "$client" == aws && -z "$op" ]] && op="\${args[i + 1]}" ;;
    --key) key="\${args[i + 1]}" ;;
    --part-number) part="\${args[i + 1]}" ;;
    -X | --request) method="\${args[i + 1]}" ;;
    -T | --upload-file) [[ -n "$method" ]] || method=PUT ;;
    -o | --output) out="\${args[i + 1]}" ;;
    -D | --dump-header) headers="\${args[i + 1]}" ;;
    http://* | https://*) url="\${args[i]}" ;;
  esac
done
if [[ "$client" == curl ]]; then
  query=""
  if [[ "$url" == *\\?* ]]; then query="\${url#*\\?}"; fi
  resource="\${url#*://}"
  resource="\${resource#*/}"
  resource="\${resource%%\\?*}"
  key="\${resource#*/}"
  key="$(printf '%b' "\${key//%/\\\\x}")"
  case "\${method:-GET} $query" in
    "PUT "*partNumber=*) op=upload-part part="\${query#*partNumber=}" part="\${part%%&*}" ;;
    "PUT "*retention=*) op=put-object-retention ;;
    "PUT "*) op=put-object ;;
    "POST "*uploads=*) op=create-multipart-upload ;;
    "POST "*uploadId=*) op=complete-multipart-upload ;;
    "DELETE "*uploadId=*) op=abort-multipart-upload ;;
    "DELETE "*) op=delete-object ;;
    "HEAD "*) op=head-object ;;
    *) op=get-object ;;
  esac
fi
record() { (IFS=$'\\t'; printf '%s\\n' "$*") >>'${log}'; }
record start "$client" "$op" "$key" "$part" "$@"
s3_error() {
  if [[ "$client" == curl ]]; then
    if [[ -n "$out" ]]; then
      printf '<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message></Message></Error>' "$2" >"$out"
    fi
    if [[ -n "$headers" ]]; then printf 'HTTP/1.1 %s Error\\r\\n\\r\\n' "$1" >"$headers"; fi
    printf '%s' "$1"
    record end "$client" "$op" "$key" "$part" 0
    exit 0
  fi
  echo "An error occurred ($2) when calling the $op operation: " >&2
  record end "$client" "$op" "$key" "$part" 254
  exit 254
}
s3_connection_reset() {
  if [[ "$client" == curl ]]; then
    printf '000'
    echo "curl: (56) Recv failure: Connection reset by peer" >&2
    record end "$client" "$op" "$key" "$part" 56
    exit 56
  fi
  echo "Connection was closed before we received a valid response from endpoint URL" >&2
  record end "$client" "$op" "$key" "$part" 255
  exit 255
}
`;

const epilogue = `"$real" "$@"
status=$?
record end "$client" "$op" "$key" "$part" "$status"
exit "$status"
`;

/** Writes both stand-ins into `dir` (created) around `body`. */
export function s3StandIn(dir: string, body = ""): S3StandIn {
  fs.mkdirSync(dir, { recursive: true });
  const log = path.join(dir, "s3-calls");
  for (const [client, real] of [
    ["aws", awsBinary],
    ["curl", curlBinary],
  ] as const) {
    fs.writeFileSync(path.join(dir, client), `${prologue(log, client, real)}${body}\n${epilogue}`, { mode: 0o755 });
  }
  const calls = (): S3Call[] => {
    if (!fs.existsSync(log)) return [];
    const started: S3Call[] = [];
    fs.readFileSync(log, "utf8")
      .split("\n")
      .filter((line) => line !== "")
      .forEach((line, index) => {
        const [kind, client, op, key, part, ...rest] = line.split("\t");
        if (kind === "start") {
          started.push({ client: client as "aws" | "curl", op, key, part, args: rest, startedAt: index });
        } else {
          const call = started.find(
            (c) => c.endedAt === undefined && c.client === client && c.op === op && c.key === key && c.part === part,
          );
          if (call) {
            call.status = Number(rest[0]);
            call.endedAt = index;
          }
        }
      });
    return started;
  };
  return { PATH: `${dir}:/usr/bin:/bin`, calls };
}
