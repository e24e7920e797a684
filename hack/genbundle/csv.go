package main

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The subset of OLM's operators.coreos.com/v1alpha1 ClusterServiceVersion
// that this bundle uses. The field names and JSON tags follow
// github.com/operator-framework/api/pkg/operators/v1alpha1; a local copy
// keeps that module (and its dependencies) out of go.mod.

type clusterServiceVersion struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Metadata   csvMetadata `json:"metadata"`
	Spec       csvSpec     `json:"spec"`
}

type csvMetadata struct {
	Name        string            `json:"name,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

type csvSpec struct {
	DisplayName               string                    `json:"displayName"`
	Description               string                    `json:"description,omitempty"`
	Keywords                  []string                  `json:"keywords,omitempty"`
	Maintainers               []maintainer              `json:"maintainers,omitempty"`
	Provider                  appLink                   `json:"provider,omitempty"`
	Links                     []appLink                 `json:"links,omitempty"`
	Icon                      []icon                    `json:"icon,omitempty"`
	Maturity                  string                    `json:"maturity,omitempty"`
	Version                   string                    `json:"version,omitempty"`
	MinKubeVersion            string                    `json:"minKubeVersion,omitempty"`
	InstallModes              []installMode             `json:"installModes,omitempty"`
	CustomResourceDefinitions customResourceDefinitions `json:"customresourcedefinitions,omitempty"`
	Install                   namedInstallStrategy      `json:"install"`
	WebhookDefinitions        []webhookDescription      `json:"webhookdefinitions,omitempty"`
}

type maintainer struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
}

type appLink struct {
	Name string `json:"name,omitempty"`
	URL  string `json:"url,omitempty"`
}

type icon struct {
	Data      string `json:"base64data"`
	MediaType string `json:"mediatype"`
}

type installMode struct {
	Type      string `json:"type"`
	Supported bool   `json:"supported"`
}

type customResourceDefinitions struct {
	Owned []crdDescription `json:"owned,omitempty"`
}

type crdDescription struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Kind        string `json:"kind"`
	DisplayName string `json:"displayName,omitempty"`
	Description string `json:"description,omitempty"`
}

type namedInstallStrategy struct {
	StrategyName string                 `json:"strategy"`
	Spec         strategyDeploymentSpec `json:"spec,omitempty"`
}

type strategyDeploymentSpec struct {
	DeploymentSpecs    []strategyDeployment  `json:"deployments"`
	Permissions        []strategyPermissions `json:"permissions,omitempty"`
	ClusterPermissions []strategyPermissions `json:"clusterPermissions,omitempty"`
}

type strategyDeployment struct {
	Name  string                `json:"name"`
	Label map[string]string     `json:"label,omitempty"`
	Spec  appsv1.DeploymentSpec `json:"spec"`
}

type strategyPermissions struct {
	ServiceAccountName string              `json:"serviceAccountName"`
	Rules              []rbacv1.PolicyRule `json:"rules"`
}

// OLM's webhook admission types.
const (
	validatingAdmissionWebhook = "ValidatingAdmissionWebhook"
	mutatingAdmissionWebhook   = "MutatingAdmissionWebhook"
)

type webhookDescription struct {
	GenerateName            string                                          `json:"generateName"`
	Type                    string                                          `json:"type"`
	DeploymentName          string                                          `json:"deploymentName,omitempty"`
	ContainerPort           int32                                           `json:"containerPort,omitempty"`
	TargetPort              *intstr.IntOrString                             `json:"targetPort,omitempty"`
	Rules                   []admissionregistrationv1.RuleWithOperations    `json:"rules,omitempty"`
	FailurePolicy           *admissionregistrationv1.FailurePolicyType      `json:"failurePolicy,omitempty"`
	MatchPolicy             *admissionregistrationv1.MatchPolicyType        `json:"matchPolicy,omitempty"`
	ObjectSelector          *metav1.LabelSelector                           `json:"objectSelector,omitempty"`
	SideEffects             *admissionregistrationv1.SideEffectClass        `json:"sideEffects"`
	TimeoutSeconds          *int32                                          `json:"timeoutSeconds,omitempty"`
	AdmissionReviewVersions []string                                        `json:"admissionReviewVersions"`
	ReinvocationPolicy      *admissionregistrationv1.ReinvocationPolicyType `json:"reinvocationPolicy,omitempty"`
	WebhookPath             *string                                         `json:"webhookPath,omitempty"`
}
