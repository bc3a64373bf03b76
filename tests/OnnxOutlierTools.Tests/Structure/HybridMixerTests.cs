using Microsoft.ML.OnnxRuntime;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Hybrid token mixers (#7 item 4): blocks whose mixer is not softmax attention are recognized by kind
/// (linear-attention, ssm, conv) with their projections, norms and recurrent states; near misses stay unknown.
/// The synthetic graphs follow the shapes of the LFM2 and Mamba exports (states past_conv.i [B, C, L] and
/// past_ssm.i [B, E, N], in/out projections around the mixer, a SwiGLU FFN) and run in ONNX Runtime.</summary>
public class HybridMixerTests
{
    private const int D = 8, S = 4, L = 3, E = 8, N = 4;

    public enum Mixer { ShortConv, ShortConvNoState, Ssm, StateWithoutRecurrence, ConvWithKvState }

    private static Model Build(Mixer mixer, int layers = 2)
    {
        var b = new GraphBuilder();
        int seq = mixer == Mixer.Ssm ? 1 : S;
        var x = b.Input("inputs_embeds", TensorDataType.Float, 1, seq, D);
        var rng = new Random(11);
        float[] Rand(int n, float scale = 0.4f) => Enumerable.Range(0, n).Select(_ => ((float)rng.NextDouble() - 0.5f) * scale).ToArray();
        Value W(string name, int rows, int cols) => b.Initializer(name, Rand(rows * cols), rows, cols);
        Value Rms(string name, Value input) => b.Node("SimplifiedLayerNormalization", [input, b.Initializer(name, Enumerable.Repeat(1f, D).ToArray())], [Attr.Float("epsilon", 1e-6f)])[0];
        Value Silu(Value v) => b.Op("Mul", v, b.Op("Sigmoid", v));
        Value T(Value v) => b.Node("Transpose", [v], [Attr.Ints("perm", 0, 2, 1)])[0];
        Value Ints(string name, params long[] values) => b.Initializer(name, values, values.Length);
        // Causal depthwise conv over [1, C, L + seq] (past state then the new columns); the state written back is the last L columns.
        (Value Out, Value Present) CausalConv(string p, Value columns, Value past, int channels)
        {
            var full = b.Node("Concat", [past, columns], [Attr.Int("axis", 2)])[0];
            var present = b.Op("Slice", full, Ints($"{p}.state_start", -L), Ints($"{p}.state_end", long.MaxValue), Ints($"{p}.state_axis", 2));
            var kernel = b.Initializer($"{p}.conv.weight", Rand(channels * (L + 1)), channels, 1, L + 1);
            return (b.Node("Conv", [full, kernel], [Attr.Int("group", channels)])[0], present);
        }

        for (int l = 0; l < layers; l++)
        {
            string p = $"model.layers.{l}";
            var h = Rms($"{p}.operator_norm.weight", x);
            Value mixed;
            switch (mixer)
            {
                case Mixer.ShortConv or Mixer.ConvWithKvState:
                {
                    // LFM2 ShortConv: B, C, x = in_proj(h).chunk(3); y = C * conv(B * x); out_proj(y).
                    var parts = b.Node("Split", [b.Op("MatMul", h, W($"{p}.conv.in_proj.weight", D, 3 * D)), Ints($"{p}.split", D, D, D)], [Attr.Int("axis", 2)], outputs: 3);
                    var past = b.Input($"past_conv.{l}", TensorDataType.Float, 1, D, L);
                    var (conv, present) = CausalConv(p, T(b.Op("Mul", parts[0], parts[2])), past, D);
                    b.Output(present, TensorDataType.Float, 1, D, L);
                    b.Graph.Outputs[^1].Name = $"present_conv.{l}";
                    var y = b.Op("Mul", parts[1], T(conv));
                    if (mixer == Mixer.ConvWithKvState)
                    {
                        // Near miss: a key cache next to the conv (an attention we do not recognize): not a conv block.
                        var pastKey = b.Input($"past_key_values.{l}.key", TensorDataType.Float, 1, D, S);
                        var kv = b.Node("Concat", [pastKey, T(parts[0])], [Attr.Int("axis", 2)])[0];
                        var keyOut = b.Op("Identity", kv);
                        b.Output(keyOut, TensorDataType.Float, 1, D, 2 * S);
                        b.Graph.Outputs[^1].Name = $"present.{l}.key";
                        y = b.Op("Add", y, T(b.Op("Slice", kv, Ints($"{p}.k_start", -S), Ints($"{p}.k_end", long.MaxValue), Ints($"{p}.k_axis", 2))));
                    }
                    mixed = b.Op("MatMul", y, W($"{p}.conv.out_proj.weight", D, D));
                    break;
                }
                case Mixer.ShortConvNoState:
                {
                    // Near miss: a gated elementwise mix with no state and no convolution.
                    var parts = b.Node("Split", [b.Op("MatMul", h, W($"{p}.conv.in_proj.weight", D, 2 * D)), Ints($"{p}.split", D, D)], [Attr.Int("axis", 2)], outputs: 2);
                    mixed = b.Op("MatMul", b.Op("Mul", parts[0], b.Op("Sigmoid", parts[1])), W($"{p}.conv.out_proj.weight", D, D));
                    break;
                }
                case Mixer.StateWithoutRecurrence:
                {
                    // Near miss: reads and writes a state, but no recurrence ops and no telling name.
                    var u = b.Op("MatMul", h, W($"{p}.mix.in_proj.weight", D, D));
                    var past = b.Input($"past_state.{l}", TensorDataType.Float, 1, 1, D);
                    var present = b.Op("Add", past, b.Op("ReduceMean", u, Ints($"{p}.axes", 1)));
                    b.Output(present, TensorDataType.Float, 1, 1, D);
                    b.Graph.Outputs[^1].Name = $"present_state.{l}";
                    mixed = b.Op("MatMul", b.Op("Mul", u, present), W($"{p}.mix.out_proj.weight", D, D));
                    break;
                }
                default:
                {
                    // Mamba selective SSM, one decoding step: x, z = in_proj(h); x = silu(conv(x)); dt = softplus(dt_proj(x));
                    // state = state * exp(dt * A) + (dt * x) B; y = state C * silu(z); out_proj(y).
                    var parts = b.Node("Split", [b.Op("MatMul", h, W($"{p}.mixer.in_proj.weight", D, 2 * E)), Ints($"{p}.split", E, E)], [Attr.Int("axis", 2)], outputs: 2);
                    var pastConv = b.Input($"past_conv.{l}", TensorDataType.Float, 1, E, L);
                    var (conv, presentConv) = CausalConv(p + ".mixer", T(parts[0]), pastConv, E);
                    b.Output(presentConv, TensorDataType.Float, 1, E, L);
                    b.Graph.Outputs[^1].Name = $"present_conv.{l}";
                    var xc = Silu(T(conv));                                                         // [1, 1, E]
                    var dt = b.Op("Softplus", b.Op("MatMul", xc, W($"{p}.mixer.dt_proj.weight", E, E)));
                    var a = b.Op("Neg", b.Op("Exp", b.Initializer($"{p}.mixer.A_log", Rand(E * N), E, N)));   // [E, N]
                    var dA = b.Op("Exp", b.Op("Mul", T(dt), a));                                   // [1, E, N]
                    var bProj = b.Op("MatMul", xc, W($"{p}.mixer.B_proj.weight", E, N));            // [1, 1, N]
                    var cProj = b.Op("MatMul", xc, W($"{p}.mixer.C_proj.weight", E, N));
                    var pastSsm = b.Input($"past_ssm.{l}", TensorDataType.Float, 1, E, N);
                    var state = b.Op("Add", b.Op("Mul", pastSsm, dA), b.Op("MatMul", T(b.Op("Mul", dt, xc)), bProj));
                    b.Output(state, TensorDataType.Float, 1, E, N);
                    b.Graph.Outputs[^1].Name = $"present_ssm.{l}";
                    var y = T(b.Op("MatMul", state, T(cProj)));                                     // [1, 1, E]
                    mixed = b.Op("MatMul", b.Op("Mul", y, Silu(parts[1])), W($"{p}.mixer.out_proj.weight", E, D));
                    break;
                }
            }
            x = b.Op("Add", x, mixed);
            var h2 = Rms($"{p}.ffn_norm.weight", x);
            var gate = b.Op("MatMul", h2, W($"{p}.feed_forward.w1.weight", D, 2 * D));
            var up = b.Op("MatMul", h2, W($"{p}.feed_forward.w3.weight", D, 2 * D));
            x = b.Op("Add", x, b.Op("MatMul", b.Op("Mul", Silu(gate), up), W($"{p}.feed_forward.w2.weight", 2 * D, D)));
        }
        b.Output(b.Op("MatMul", Rms("model.embedding_norm.weight", x), W("lm_head.weight", D, 32)), TensorDataType.Float, 1, seq, 32);
        b.Graph.Outputs[^1].Name = "logits";
        return b.ToModel(irVersion: 8, new OpsetId("", 17), new OpsetId("com.microsoft", 1));
    }

    [Theory]
    [InlineData(Mixer.ShortConv, BlockKind.Conv, new[] { StateKind.Conv })]
    [InlineData(Mixer.Ssm, BlockKind.Ssm, new[] { StateKind.Conv, StateKind.Recurrent })]
    public void HybridMixer_IsRecognizedByKind(Mixer mixer, BlockKind kind, StateKind[] states)
    {
        using var model = Build(mixer);
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(2, s.Blocks.Count);
        foreach (var blk in s.Blocks)
        {
            Assert.Equal(kind, blk.Kind);
            Assert.Empty(StructureReport.Missing(blk));
            var m = blk.Mixer!;
            Assert.Equal(states, m.States.Select(st => st.Kind).ToArray());
            Assert.All(m.States, st => Assert.True(st.Past is { IsGraphInput: true } && st.Present is { IsGraphOutput: true }, $"block {blk.Index}: {st}"));
            Assert.Equal($"model.layers.{blk.Index}.operator_norm.weight", blk.AttentionNorm!.Gain.Name);
            Assert.Same(blk.AttentionNorm, m.InputProjections[0].Norm);
            Assert.Contains(m.InputProjections[0].Linears, l => l.Weight.Name.EndsWith("in_proj.weight", StringComparison.Ordinal));
            Assert.EndsWith("out_proj.weight", m.OutputProjection!.Weight.Name);
            Assert.Equal((FfnKind.Glu, FfnActivation.Silu), (blk.Ffn!.Kind, blk.Ffn.Activation));
        }
        Assert.Equal("lm_head.weight", s.LmHead!.Weight.Name);
        var json = StructureReport.ToJson(result, includeTrace: false);
        Assert.Equal(kind == BlockKind.Conv ? "conv" : "ssm", json.Blocks[0].Kind);
        Assert.Equal("past_conv.0", json.Blocks[0].Mixer!.States[0].Past);
        Assert.Contains($"[{json.Blocks[0].Kind}]", StructureReport.ToText(result, explain: false));
    }

    [Theory]
    [InlineData(Mixer.ShortConvNoState)]
    [InlineData(Mixer.StateWithoutRecurrence)]
    [InlineData(Mixer.ConvWithKvState)]
    public void NearMiss_StaysUnknown_WithItsLinears(Mixer mixer)
    {
        using var model = Build(mixer);
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message);
        var s = result.Structure!;
        Assert.Equal(2, s.Blocks.Count);
        Assert.All(s.Blocks, blk =>
        {
            Assert.Equal(BlockKind.Unknown, blk.Kind);
            Assert.NotNull(blk.Mixer!.OutputProjection);
            Assert.NotEmpty(blk.Mixer.InputProjections);
            Assert.Contains(blk.Mixer.NotUnderstood, n => n.Contains("no attention rule and no mixer rule"));
        });
    }

    [Theory]
    [InlineData(Mixer.ShortConv)]
    [InlineData(Mixer.Ssm)]
    public void HybridMixerGraph_RunsInOrt_AndCarriesItsState(Mixer mixer)
    {
        using var model = Build(mixer);
        using var dir = new TempFolder("hybrid");
        string path = dir.Path("model.onnx");
        ModelWriter.Save(model, path);
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(path, options);
        var names = session.InputNames.ToList();
        var values = new List<OrtValue>();
        try
        {
            foreach (var name in names)
            {
                var dims = session.InputMetadata[name].Dimensions.Select(d => (long)d).ToArray();
                var data = Enumerable.Range(0, (int)dims.Aggregate(1L, (a, c) => a * c)).Select(i => MathF.Cos(i * 0.7f) * 0.5f).ToArray();
                values.Add(OrtValue.CreateTensorValueFromMemory(data, dims));
            }
            using var outputs = session.Run(new RunOptions(), names, values, session.OutputNames);
            for (int i = 0; i < outputs.Count; i++)
                Assert.All(outputs[i].GetTensorDataAsSpan<float>().ToArray(), v => Assert.True(float.IsFinite(v), session.OutputNames[i]));
            if (mixer == Mixer.ShortConv)
            {
                // present_conv keeps the last L columns of [past_conv | B*x]: with S >= L none of the past survives.
                int present = session.OutputNames.ToList().IndexOf("present_conv.0");
                int past = names.IndexOf("past_conv.0");
                var pastData = values[past].GetTensorDataAsSpan<float>().ToArray();
                var presentData = outputs[present].GetTensorDataAsSpan<float>().ToArray();
                Assert.Equal(D * L, presentData.Length);
                Assert.NotEqual(pastData, presentData);
            }
        }
        finally { foreach (var v in values) v.Dispose(); }
    }
}
