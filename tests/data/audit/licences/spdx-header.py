# SPDX-License-Identifier: MIT
"""A source file that only names its licence."""
