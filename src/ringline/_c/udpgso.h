/* ringline: the UDP_SEGMENT control message of a GSO datagram send.
 *
 * One sendmsg(2) carrying this cmsg hands the kernel a buffer of several
 * equal-size datagrams (the last may be shorter); the UDP layer (or the
 * device) cuts it into `segment`-byte datagrams. The buffer lives in the
 * send operation (_DgramSendOp.cmsg) for as long as the kernel may read it.
 * No state; rl_udp_segment_cmsg fills `buf` (at least RL_GSO_CMSG_SPACE
 * bytes, 8-byte aligned) and returns the msg_controllen to use.
 */
#ifndef RINGLINE_UDPGSO_H
#define RINGLINE_UDPGSO_H
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

#define RL_GSO_CMSG_SPACE CMSG_SPACE(sizeof(uint16_t))

static inline size_t rl_udp_segment_cmsg(void *buf, uint16_t segment)
{
    struct cmsghdr *cm = (struct cmsghdr *)buf;
    memset(buf, 0, RL_GSO_CMSG_SPACE);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(cm), &segment, sizeof(uint16_t));
    return RL_GSO_CMSG_SPACE;
}
#endif
