#version 330
// Instanced voxels: one instance per voxel, 18 vertices per instance (the three faces of a
// unit cube that face +x, +y and +z, mirrored per axis toward the eye, which are exactly
// the faces visible from there).

// Per vertex.
in vec3 in_corner;  // Face corner in [-0.5, 0.5]^3.
in vec3 in_normal;  // Face normal: +x, +y or +z.
// Per instance.
in vec3 in_center;  // Voxel centre (world).
in vec3 in_size;    // Box extents at value 1.
in float in_value;  // Normalized value in [0, 1]: colour and z extent.

uniform mat4 u_view_projection;
uniform vec3 u_eye;
uniform float u_min_height;  // z extent factor at value 0 (1 at value 1).
uniform int u_selected;      // Instance drawn highlighted, or -1.
uniform int u_hovered;       // Instance drawn brightened, or -1.
uniform vec3 u_colormap[256];  // RGB lookup table (an array: llvmpipe samples textures
                               // in vertex shaders far more slowly).

flat out vec3 v_color;

const vec3 LIGHT = vec3(0.32, 0.55, 0.77);  // Unit vector.

void main() {
  vec3 toward = sign(u_eye - in_center);
  toward = mix(vec3(1.0), toward, abs(toward));
  float value = clamp(in_value, 0.0, 1.0);
  vec3 extent = in_size * vec3(1.0, 1.0, mix(u_min_height, 1.0, value));
  gl_Position = u_view_projection * vec4(in_center + in_corner * toward * extent, 1.0);

  vec3 base = u_colormap[int(value * 255.0 + 0.5)];
  float light = 0.6 + 0.4 * max(dot(in_normal * toward, LIGHT), 0.0);
  vec3 color = base * light;
  if (gl_InstanceID == u_selected) {
    color = mix(color, vec3(1.0), 0.8);
  } else if (gl_InstanceID == u_hovered) {
    color = mix(color, vec3(1.0), 0.4);
  }
  v_color = color;
}
