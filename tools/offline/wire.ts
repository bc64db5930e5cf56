/** Markers Pulumi's wire format uses inside property values (sdk/nodejs/runtime/rpc.ts). */
export const specialSig = "4dabf18193072939515e22adb298388d";
export const sigs = {
  secret: "1b47061264138c4ac30d75fd1eb44270",
  resourceReference: "5cf8f73096256a8f31e491e813e4eb8e",
  asset: "c44067f5952c0a294b673a41bacd8c17",
  archive: "0def7320c3a5731c473e5ecbe6d01bc7",
  output: "d0e6a833031e9bbcd3f4e8bde6ca49a4",
};
export const unknownValue = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** Pulumi's wire form of a secret value, as the engine sends it. */
export function wireSecret(value: unknown): Record<string, unknown> {
  return { [specialSig]: sigs.secret, value };
}
