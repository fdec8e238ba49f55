// SPDX-License-Identifier: GPL-2.0
/*
 * khotfix hotfix 30001 (ipvs-estimation-timer), Debian 12 target.
 *
 * Written against: Debian 12 linux 6.1.0-56-amd64 (upstream 6.1.192),
 * net/netfilter/ipvs/ip_vs_est.c, where the estimator is still the per-netns
 * timer `static void estimation_timer(struct timer_list *t)` (the kthread
 * estimator replaced it in 6.2). Checked against
 * /usr/src/linux-headers-6.1.0-56-common/include/net/ip_vs.h: struct
 * netns_ipvs has est_list, est_lock, est_timer and sysctl_run_estimation.
 *
 * The replacement keeps the timer alive but skips the walk over est_list
 * (which took >100 ms per run in softirq with ~30,000 IPVS rules, seed 003).
 * It does exactly what the unpatched function does when
 * net.ipv4.vs.run_estimation = 0: re-arm the timer 2 s later. The skipped
 * walk is also what sums the per-CPU counters, so while the patch is enabled
 * the totals (connections, packets, bytes) freeze along with the rates.
 * Disabling it (echo 0 > /sys/kernel/livepatch/kpatch_30001/enabled) or
 * unloading the module puts the original function back within about 2 s;
 * its first rates spike, then settle. Details and figures: the description
 * in recipes/ipvs-estimation-timer.toml.
 *
 * This module is the verify-only cross-check (target debian12) of the
 * kpatch-built target debian12-kpatch, which is the one published.
 *
 * Built with kbuild: make -C /lib/modules/<kver>/build M=$PWD
 * The module file is kpatch-30001.ko, so the loaded name is kpatch_30001.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/timer.h>
#include <net/ip_vs.h>

/* Replacement for ip_vs's static estimation_timer(): re-arm, do no work. */
static void khotfix_estimation_timer(struct timer_list *t)
{
	struct netns_ipvs *ipvs = from_timer(ipvs, t, est_timer);

	mod_timer(&ipvs->est_timer, jiffies + 2 * HZ);
}

static struct klp_func funcs[] = {
	{
		.old_name = "estimation_timer",
		.new_func = khotfix_estimation_timer,
	},
	{}
};

static struct klp_object objs[] = {
	{
		/* ip_vs.ko; the patch applies when the module loads. */
		.name = "ip_vs",
		.funcs = funcs,
	},
	{}
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int __init khotfix_init(void)
{
	int ret = klp_enable_patch(&patch);

	if (!ret)
		pr_info("hotfix 30001: IPVS estimation_timer no longer walks est_list\n");
	return ret;
}

static void __exit khotfix_exit(void)
{
}

module_init(khotfix_init);
module_exit(khotfix_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("khotfix 30001: IPVS estimation_timer no-op (livepatch)");
MODULE_INFO(livepatch, "Y");
