/** Day-2 operations: certificate renewal and etcd defragmentation. */
import type { ClusterConfig } from "./index";
import { cronSettingError } from "./cron";
import { complete, integer, live, Reader, rolling, string } from "./schema";

/** A value whose every change means "do it again" (token rotation, certificate renewal). */
export const revisionLabel = /^[A-Za-z0-9._-]{1,63}$/;

export const maintenanceSettings = {
  certificateRenewal: string(
    rolling("each new value renews the kubeadm certificates on every node, one node at a time"),
    (v) =>
      v === "" || revisionLabel.test(v)
        ? undefined
        : "must be \"\" (no renewal) or 1-63 letters, digits, '.', '_' or '-' such as 2027-05-01; each new value renews the certificates once",
  ),
  certificateExpiryWarningDays: integer(live("only the certificate expiry alert's threshold changes"), (v) =>
    v >= 8 && v <= 180
      ? undefined
      : "must be from 8 to 180 days (the critical alert fires at 7 days; kubeadm certificates last 365)",
  ),
  etcdDefragSchedule: string(live("the etcd-defrag CronJob is updated in place"), cronSettingError),
  etcdDefragThresholdPercent: integer(live("the etcd-defrag CronJob is updated in place"), (v) =>
    v >= 1 && v <= 99 ? undefined : "must be from 1 to 99 (percent of the database file that is free)",
  ),
  etcdDefragMinSizeMiB: integer(live("the etcd-defrag CronJob is updated in place"), (v) =>
    v >= 0 && v <= 8192 ? undefined : "must be from 0 to 8192 MiB (etcd's largest quota)",
  ),
};

export function readMaintenance(reader: Reader): ClusterConfig["maintenance"] | undefined {
  const v = complete(maintenanceSettings, reader.read(maintenanceSettings));
  return (
    v && {
      certificateRenewal: v.certificateRenewal,
      certificateExpiryWarningDays: v.certificateExpiryWarningDays,
      defrag: {
        schedule: v.etcdDefragSchedule,
        thresholdPercent: v.etcdDefragThresholdPercent,
        minSizeMiB: v.etcdDefragMinSizeMiB,
      },
    }
  );
}
