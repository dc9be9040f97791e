/* xbdkit — blkif xenstore key names.
 *
 * PROVISIONAL: written by hand so that code can use the names from day one;
 * the schema issue replaces it with a header generated from the
 * machine-readable schema in this folder.  The macro names stay: XBDK_ then
 * the key in upper snake case; keys with a %u get a _FMT suffix.
 */
#ifndef XBD_KEYS_H
#define XBD_KEYS_H

/* Backend directory, written by the toolstack. */
#define XBDK_FRONTEND                    "frontend"
#define XBDK_FRONTEND_ID                 "frontend-id"
#define XBDK_ONLINE                      "online"
#define XBDK_STATE                       "state"
#define XBDK_REMOVABLE                   "removable"
#define XBDK_BOOTABLE                    "bootable"
#define XBDK_DEV                         "dev"
#define XBDK_TYPE                        "type"
#define XBDK_MODE                        "mode"
#define XBDK_DEVICE_TYPE                 "device-type"
#define XBDK_PARAMS                      "params"
#define XBDK_SCRIPT                      "script"
#define XBDK_DIRECT_IO_SAFE              "direct-io-safe"
#define XBDK_DISCARD_ENABLE              "discard-enable"
/* Backend directory, written by the hotplug script. */
#define XBDK_PHYSICAL_DEVICE             "physical-device"
#define XBDK_PHYSICAL_DEVICE_PATH        "physical-device-path"
#define XBDK_HOTPLUG_STATUS              "hotplug-status"
#define XBDK_HOTPLUG_ERROR               "hotplug-error"
/* Backend directory, written by the backend. */
#define XBDK_MAX_RING_PAGE_ORDER         "max-ring-page-order"
#define XBDK_MAX_RING_PAGES              "max-ring-pages"
#define XBDK_MULTI_QUEUE_MAX_QUEUES      "multi-queue-max-queues"
#define XBDK_FEATURE_MAX_INDIRECT_SEGMENTS "feature-max-indirect-segments"
#define XBDK_FEATURE_PERSISTENT          "feature-persistent"
#define XBDK_FEATURE_FLUSH_CACHE         "feature-flush-cache"
#define XBDK_FEATURE_BARRIER             "feature-barrier"
#define XBDK_FEATURE_DISCARD             "feature-discard"
#define XBDK_DISCARD_GRANULARITY         "discard-granularity"
#define XBDK_DISCARD_ALIGNMENT           "discard-alignment"
#define XBDK_DISCARD_SECURE              "discard-secure"
#define XBDK_INFO                        "info"
#define XBDK_SECTOR_SIZE                 "sector-size"
#define XBDK_PHYSICAL_SECTOR_SIZE        "physical-sector-size"
#define XBDK_SECTORS                     "sectors"
#define XBDK_ERROR                       "error"
/* Frontend directory, written by the toolstack. */
#define XBDK_BACKEND                     "backend"
#define XBDK_BACKEND_ID                  "backend-id"
#define XBDK_VIRTUAL_DEVICE              "virtual-device"
#define XBDK_TRUSTED                     "trusted"
/* Frontend directory, written by the frontend. */
#define XBDK_PROTOCOL                    "protocol"
#define XBDK_EVENT_CHANNEL               "event-channel"
#define XBDK_RING_REF                    "ring-ref"
#define XBDK_RING_REF_FMT                "ring-ref%u"
#define XBDK_RING_PAGE_ORDER             "ring-page-order"
#define XBDK_NUM_RING_PAGES              "num-ring-pages"
#define XBDK_MULTI_QUEUE_NUM_QUEUES      "multi-queue-num-queues"
#define XBDK_QUEUE_FMT                   "queue-%u"
#define XBDK_FEATURE_LARGE_SECTOR_SIZE   "feature-large-sector-size"

#endif /* XBD_KEYS_H */
