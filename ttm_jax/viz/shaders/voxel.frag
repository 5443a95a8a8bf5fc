#version 330
// Flat-shaded voxel faces; the colour comes from the vertex shader.

flat in vec3 v_color;
out vec4 f_color;

void main() {
  f_color = vec4(v_color, 1.0);
}
