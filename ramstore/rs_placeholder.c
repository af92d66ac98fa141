/* SPDX-License-Identifier: MIT */
/* Replaced by the store (issue 3). */
typedef int bgs_rs_placeholder;
