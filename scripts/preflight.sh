#!/usr/bin/env bash
# Checks an AWS account and region before deploying cloudformation/parent.yml, with the AWS
# CLI (read-only calls only; nothing is created). One PASS/WARN/FAIL line per check; exits 1
# if any check FAILs. scripts/deploy.sh --deploy runs it first. Not run in CI (needs AWS).
#
#   scripts/preflight.sh [--region R] [--stack-name S] [--metrics-export cloudwatch|prometheus]
#                        [--ecs-exec true|false] [--pull-through-cache-prefix P]
#                        [--create-pull-through-cache-rule true|false]
#                        [--network-mode dualstack|ipv6only]
#
# What it checks, and why:
#   tools          aws, sam, docker; session-manager-plugin for ECS Exec; dig and curl (verify)
#   credentials    aws sts get-caller-identity
#   region         set, and enabled for the account (opt-in regions)
#   dualStackIPv6  the ECS account setting, effective for the deploying principal: without it
#                  Fargate tasks get no IPv6 address in the dual-stack subnets, and every IPv6
#                  path of the pattern (egress-only gateway) is dead (ipv6only: required here
#                  too; whether IPv6-only subnets need it is not verified)
#   AZs            the VPC template uses the region's first two Availability Zones
#   endpoints      every PrivateLink service the VPC template creates exists in the region;
#                  ipv6only: each interface service accepts IPv6 (SupportedIpAddressTypes),
#                  which an endpoint of IpAddressType ipv6 needs, else the stack fails
#   Elastic IPs    ipv6only: the NAT gateway takes one (WARN when the quota looks used up)
#   VPC quota      the stack creates one more VPC
#   cache rule     the pull through cache prefix is free, or already this stack's
#   stack          not left in a state that blocks an update (ROLLBACK_COMPLETE, *_IN_PROGRESS)
set -euo pipefail

REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
STACK_NAME=ipv6-environment
METRICS_EXPORT=cloudwatch
ECS_EXEC=true
PTC_PREFIX=dualprobe-ecr-public
PTC_CREATE=true
NETWORK_MODE=dualstack

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "preflight: $*" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --region) REGION="${2:?--region needs a value}"; shift 2 ;;
    --stack-name) STACK_NAME="${2:?--stack-name needs a value}"; shift 2 ;;
    --metrics-export) METRICS_EXPORT="${2:?}"; shift 2 ;;
    --ecs-exec) ECS_EXEC="${2:?}"; shift 2 ;;
    --pull-through-cache-prefix) PTC_PREFIX="${2-}"; shift 2 ;;
    --create-pull-through-cache-rule) PTC_CREATE="${2:?}"; shift 2 ;;
    --network-mode) NETWORK_MODE="${2:?}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ "${METRICS_EXPORT}" == cloudwatch || "${METRICS_EXPORT}" == prometheus ]] \
  || die "--metrics-export must be cloudwatch or prometheus, not '${METRICS_EXPORT}'"
[[ "${ECS_EXEC}" == true || "${ECS_EXEC}" == false ]] || die "--ecs-exec must be true or false"
[[ "${PTC_CREATE}" == true || "${PTC_CREATE}" == false ]] || die "--create-pull-through-cache-rule must be true or false"
[[ "${NETWORK_MODE}" == dualstack || "${NETWORK_MODE}" == ipv6only ]] \
  || die "--network-mode must be dualstack or ipv6only, not '${NETWORK_MODE}'"

fails=0
warns=0
pass() { printf 'PASS  %s\n' "$*"; }
warn() { printf 'WARN  %s\n' "$*"; warns=$((warns + 1)); }
fail() { printf 'FAIL  %s\n' "$*"; fails=$((fails + 1)); }
finish() {
  echo "preflight: ${fails} failed, ${warns} warnings"
  exit $((fails > 0))
}

# ------------------------------------------------------------------ tools
for tool in aws sam docker; do
  if command -v "${tool}" >/dev/null 2>&1; then pass "tool ${tool}"; else fail "tool ${tool} not on PATH"; fi
done
if [[ "${ECS_EXEC}" == true ]]; then
  if command -v session-manager-plugin >/dev/null 2>&1; then
    pass "tool session-manager-plugin (aws ecs execute-command)"
  else
    warn "session-manager-plugin not on PATH: 'aws ecs execute-command' (ECS Exec, deploy.sh --verify) needs it"
  fi
fi
for tool in dig curl; do
  command -v "${tool}" >/dev/null 2>&1 || warn "tool ${tool} not on PATH (deploy.sh --verify uses it)"
done
command -v aws >/dev/null 2>&1 || finish

# aws_q ARGS...: the AWS CLI in the region, text output; stderr kept for the message.
errfile="$(mktemp)"
trap 'rm -f "${errfile}"' EXIT
aws_q() { aws --region "${REGION}" --output text "$@" 2>"${errfile}"; }
why() { tr '\n' ' ' <"${errfile}" | cut -c1-300; }

# ------------------------------------------------------------------ region, credentials
if [[ -z "${REGION}" ]]; then
  REGION="$(aws configure get region 2>/dev/null || true)"
fi
if [[ -z "${REGION}" ]]; then
  fail "region: none (pass --region, or set AWS_REGION or 'aws configure set region')"
  finish
fi
if account="$(aws_q sts get-caller-identity --query Account)"; then
  pass "credentials: account ${account} ($(aws_q sts get-caller-identity --query Arn))"
else
  fail "credentials: aws sts get-caller-identity failed: $(why)"
  finish
fi
if opt="$(aws_q ec2 describe-regions --all-regions --region-names "${REGION}" --query 'Regions[0].OptInStatus')"; then
  if [[ "${opt}" == not-opted-in ]]; then
    fail "region ${REGION}: not enabled for this account (opt-in region)"
  else
    pass "region ${REGION} (${opt})"
  fi
else
  fail "region ${REGION}: ec2 describe-regions failed: $(why)"
fi

# ------------------------------------------------------------------ ECS dualStackIPv6
if v="$(aws_q ecs list-account-settings --effective-settings --name dualStackIPv6 --query 'settings[0].value')"; then
  if [[ "${v}" == enabled ]]; then
    pass "ECS account setting dualStackIPv6 = enabled"
  else
    fail "ECS account setting dualStackIPv6 = ${v:-unset}: Fargate tasks would get no IPv6 address. Enable it:" \
      "aws ecs put-account-setting-default --region ${REGION} --name dualStackIPv6 --value enabled" \
      "(and 'aws ecs put-account-setting' with the same arguments if your principal overrides it)"
  fi
else
  fail "ECS account setting dualStackIPv6: list-account-settings failed: $(why)"
fi

# ------------------------------------------------------------------ Availability Zones
if azs="$(aws_q ec2 describe-availability-zones --filters Name=state,Values=available \
            Name=zone-type,Values=availability-zone --query 'length(AvailabilityZones)')"; then
  if ((azs >= 2)); then pass "Availability Zones: ${azs} available"; else fail "Availability Zones: ${azs} available, the VPC needs 2"; fi
else
  fail "Availability Zones: describe-availability-zones failed: $(why)"
fi

# ------------------------------------------------------------------ PrivateLink services
# The interface endpoints of ipv6-vpc.yml (ECR's only in dualstack mode: IPv6-only tasks pull
# from ECR's dual-stack names, which PrivateLink does not carry), then the S3 gateway endpoint.
interface=(logs)
[[ "${NETWORK_MODE}" == dualstack ]] && interface=(ecr.api ecr.dkr logs)
[[ "${ECS_EXEC}" == true ]] && interface+=(ssm ssmmessages)
[[ "${METRICS_EXPORT}" == prometheus ]] && interface+=(aps-workspaces)
services=("${interface[@]}" s3)
names=()
for s in "${services[@]}"; do names+=("com.amazonaws.${REGION}.${s}"); done
if found="$(aws_q ec2 describe-vpc-endpoint-services --query 'ServiceNames' | tr '\t' '\n')"; then
  for n in "${names[@]}"; do
    if grep -qx "${n}" <<<"${found}"; then pass "endpoint service ${n}"; else fail "endpoint service ${n}: not offered in ${REGION}"; fi
  done
else
  fail "endpoint services: describe-vpc-endpoint-services failed: $(why)"
fi
if [[ "${NETWORK_MODE}" == ipv6only ]]; then
  # An endpoint of IpAddressType ipv6 needs a service that accepts IPv6 requests.
  for s in "${interface[@]}"; do
    n="com.amazonaws.${REGION}.${s}"
    if types="$(aws_q ec2 describe-vpc-endpoint-services --service-names "${n}" \
                  --query 'ServiceDetails[0].SupportedIpAddressTypes')"; then
      if grep -qw ipv6 <<<"${types}"; then
        pass "endpoint service ${n} accepts IPv6 (${types//$'\t'/, })"
      else
        [[ "${types}" == None ]] && types="(none given)"
        fail "endpoint service ${n}: SupportedIpAddressTypes ${types}, no ipv6: its IPv6 endpoint" \
          "in the IPv6-only subnets cannot be created in ${REGION} (NetworkMode=ipv6only)"
      fi
    else
      fail "endpoint service ${n}: describe-vpc-endpoint-services --service-names failed: $(why)"
    fi
  done
fi

# ------------------------------------------------------------------ Elastic IP (NAT64)
if [[ "${NETWORK_MODE}" == ipv6only ]]; then
  if eips="$(aws_q ec2 describe-addresses --filters Name=domain,Values=vpc --query 'length(Addresses)')"; then
    if quota="$(aws_q service-quotas get-service-quota --service-code ec2 --quota-code L-0263D0A3 --query 'Quota.Value')"; then
      quota="${quota%.*}"
      if ((eips < quota)); then pass "Elastic IPs: ${eips} of ${quota} (the NAT gateway takes one)"
      else fail "Elastic IPs: ${eips} of ${quota}: the NAT gateway of NetworkMode=ipv6only needs one more"; fi
    else
      warn "Elastic IPs: ${eips} in use; quota not readable ($(why)); the default is 5, the NAT gateway takes one"
    fi
  else
    warn "Elastic IPs: describe-addresses failed: $(why)"
  fi
fi

# ------------------------------------------------------------------ VPC quota
if vpcs="$(aws_q ec2 describe-vpcs --query 'length(Vpcs)')"; then
  if quota="$(aws_q service-quotas get-service-quota --service-code vpc --quota-code L-F678F1CE --query 'Quota.Value')"; then
    quota="${quota%.*}"
    if ((vpcs < quota)); then pass "VPCs: ${vpcs} of ${quota}"; else fail "VPCs: ${vpcs} of ${quota}: the stack needs one more"; fi
  else
    warn "VPCs: ${vpcs} in use; quota not readable ($(why)); the default is 5"
  fi
else
  warn "VPCs: describe-vpcs failed: $(why)"
fi

# ------------------------------------------------------------------ stack state
stack_status=""
if stack_status="$(aws_q cloudformation describe-stacks --stack-name "${STACK_NAME}" --query 'Stacks[0].StackStatus')"; then
  case "${stack_status}" in
    ROLLBACK_COMPLETE|*_FAILED) fail "stack ${STACK_NAME}: ${stack_status}; delete it first (sam delete --stack-name ${STACK_NAME})" ;;
    *_IN_PROGRESS) fail "stack ${STACK_NAME}: ${stack_status}; wait for it to finish" ;;
    *) pass "stack ${STACK_NAME}: ${stack_status} (will be updated)" ;;
  esac
elif grep -q 'does not exist' "${errfile}"; then
  pass "stack ${STACK_NAME}: new"
  stack_status=""
else
  fail "stack ${STACK_NAME}: describe-stacks failed: $(why)"
fi

# ------------------------------------------------------------------ pull through cache rule
if [[ -n "${PTC_PREFIX}" ]]; then
  if upstream="$(aws_q ecr describe-pull-through-cache-rules --ecr-repository-prefixes "${PTC_PREFIX}" \
                   --query 'pullThroughCacheRules[0].upstreamRegistryUrl')"; then
    # The rule's physical ID is its prefix; CloudFormation knows which stack owns it.
    owner="$(aws_q cloudformation describe-stack-resources --physical-resource-id "${PTC_PREFIX}" \
               --query 'StackResources[0].StackName' || true)"
    if [[ "${upstream}" != public.ecr.aws ]]; then
      fail "cache rule ${PTC_PREFIX}: exists for ${upstream}, not public.ecr.aws; pick another --pull-through-cache-prefix"
    elif [[ "${PTC_CREATE}" == false ]]; then
      pass "cache rule ${PTC_PREFIX}: exists (public.ecr.aws), reused"
    elif [[ -n "${owner}" && "${owner}" == "${STACK_NAME}"-* ]]; then
      pass "cache rule ${PTC_PREFIX}: this stack's (${owner})"
    else
      fail "cache rule ${PTC_PREFIX}: already exists${owner:+ (stack ${owner})}; reuse it with" \
        "CreateEcrPullThroughCacheRule=false (deploy.sh --no-create-cache-rule) or pick another prefix"
    fi
  elif grep -q PullThroughCacheRuleNotFound "${errfile}"; then
    if [[ "${PTC_CREATE}" == true ]]; then
      pass "cache rule ${PTC_PREFIX}: free, the stack creates it"
    else
      fail "cache rule ${PTC_PREFIX}: does not exist and CreateEcrPullThroughCacheRule=false"
    fi
  else
    fail "cache rule ${PTC_PREFIX}: describe-pull-through-cache-rules failed: $(why)"
  fi
fi

# ------------------------------------------------------------------ ECS service-linked role
if aws_q iam get-role --role-name AWSServiceRoleForECS --query Role.Arn >/dev/null; then
  pass "IAM role AWSServiceRoleForECS"
else
  warn "IAM role AWSServiceRoleForECS not found ($(why)); ECS creates it on first use, or:" \
    "aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com"
fi

finish
