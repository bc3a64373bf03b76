using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx.Protobuf;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>A linear-attention block whose recurrence is a Scan, as in Qwen3.5's Gated-DeltaNet prefill branch: per
/// token S = decay * S + k^T v and y = q S, with the state read from past_recurrent.0 and written to
/// present_recurrent.0. Built as protobuf (the IR builder has no graph attributes), run in ORT against a float64
/// reference, and recognized as a linear-attention block.</summary>
public class ScanLinearAttentionTests
{
    private const int D = 8, K = 4, S = 3;
    private const float Decay = 0.9f;

    private static readonly float[] Wqkv = Values(D * 3 * K, 1), Wo = Values(K * D, 2), W1 = Values(D * 16, 3), W2 = Values(16 * D, 4), Wlm = Values(D * 10, 5);

    private static float[] Values(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => ((float)rng.NextDouble() - 0.5f) * 0.6f).ToArray();
    }

    private static NodeProto N(string op, string[] inputs, string[] outputs, params AttributeProto[] attrs)
    {
        var n = new NodeProto { OpType = op, Name = outputs[0] + "_node" };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        n.Attribute.AddRange(attrs);
        return n;
    }

    private static TensorProto T(string name, float[] data, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.AddRange(dims);
        t.FloatData.AddRange(data);
        return t;
    }

    private static TensorProto I64(string name, params long[] data)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64, Dims = { data.Length } };
        t.Int64Data.AddRange(data);
        return t;
    }

    private static ValueInfoProto V(string name, params long[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } } };
    }

    private static AttributeProto Int(string name, long v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = v };

    private static ModelProto Build()
    {
        var body = new GraphProto { Name = "recurrence" };
        body.Input.Add(V("s_in", K, K));
        body.Input.Add(V("q_t", K));
        body.Input.Add(V("k_t", K));
        body.Input.Add(V("v_t", K));
        body.Initializer.Add(T("decay", [Decay]));
        body.Initializer.Add(I64("ax0", 0));
        body.Initializer.Add(I64("ax1", 1));
        body.Node.Add(N("Unsqueeze", ["k_t", "ax1"], ["k_col"]));
        body.Node.Add(N("Unsqueeze", ["v_t", "ax0"], ["v_row"]));
        body.Node.Add(N("MatMul", ["k_col", "v_row"], ["kv"]));
        body.Node.Add(N("Mul", ["s_in", "decay"], ["s_decayed"]));
        body.Node.Add(N("Add", ["s_decayed", "kv"], ["s_out"]));
        body.Node.Add(N("Unsqueeze", ["q_t", "ax0"], ["q_row"]));
        body.Node.Add(N("MatMul", ["q_row", "s_out"], ["y_row"]));
        body.Node.Add(N("Squeeze", ["y_row", "ax0"], ["y_t"]));
        body.Output.Add(V("s_out", K, K));
        body.Output.Add(V("y_t", K));

        var g = new GraphProto { Name = "linear_attention" };
        g.Input.Add(V("inputs_embeds", 1, S, D));
        g.Input.Add(V("past_recurrent.0", 1, K, K));
        g.Output.Add(V("logits", 1, S, 10));
        g.Output.Add(V("present_recurrent.0", 1, K, K));
        g.Initializer.Add(T("model.layers.0.input_layernorm.weight", Enumerable.Repeat(1f, D).ToArray(), D));
        g.Initializer.Add(T("model.layers.0.post_attention_layernorm.weight", Enumerable.Repeat(1f, D).ToArray(), D));
        g.Initializer.Add(T("model.norm.weight", Enumerable.Repeat(1f, D).ToArray(), D));
        g.Initializer.Add(T("model.layers.0.linear_attn.in_proj_qkv.weight", Wqkv, D, 3 * K));
        g.Initializer.Add(T("model.layers.0.linear_attn.out_proj.weight", Wo, K, D));
        g.Initializer.Add(T("model.layers.0.mlp.fc1.weight", W1, D, 16));
        g.Initializer.Add(T("model.layers.0.mlp.fc2.weight", W2, 16, D));
        g.Initializer.Add(T("lm_head.weight", Wlm, D, 10));
        g.Initializer.Add(I64("split", K, K, K));
        g.Initializer.Add(I64("axis0", 0));
        var eps = new AttributeProto { Name = "epsilon", Type = AttributeProto.Types.AttributeType.Float, F = 1e-6f };
        g.Node.Add(N("SimplifiedLayerNormalization", ["inputs_embeds", "model.layers.0.input_layernorm.weight"], ["h"], eps));
        g.Node.Add(N("MatMul", ["h", "model.layers.0.linear_attn.in_proj_qkv.weight"], ["qkv"]));
        g.Node.Add(N("Split", ["qkv", "split"], ["q", "k", "v"], Int("axis", 2)));
        foreach (var name in new[] { "q", "k", "v" }) g.Node.Add(N("Squeeze", [name, "axis0"], [name + "_seq"]));
        g.Node.Add(N("Squeeze", ["past_recurrent.0", "axis0"], ["state0"]));
        var scan = N("Scan", ["state0", "q_seq", "k_seq", "v_seq"], ["state_final", "y_seq"], Int("num_scan_inputs", 3));
        scan.Attribute.Add(new AttributeProto { Name = "body", Type = AttributeProto.Types.AttributeType.Graph, G = body });
        g.Node.Add(scan);
        g.Node.Add(N("Unsqueeze", ["state_final", "axis0"], ["present_recurrent.0"]));
        g.Node.Add(N("Unsqueeze", ["y_seq", "axis0"], ["y"]));
        g.Node.Add(N("MatMul", ["y", "model.layers.0.linear_attn.out_proj.weight"], ["o"]));
        g.Node.Add(N("Add", ["inputs_embeds", "o"], ["x1"]));
        g.Node.Add(N("SimplifiedLayerNormalization", ["x1", "model.layers.0.post_attention_layernorm.weight"], ["h2"], eps));
        g.Node.Add(N("MatMul", ["h2", "model.layers.0.mlp.fc1.weight"], ["f1"]));
        g.Node.Add(N("Relu", ["f1"], ["a1"]));
        g.Node.Add(N("MatMul", ["a1", "model.layers.0.mlp.fc2.weight"], ["f2"]));
        g.Node.Add(N("Add", ["x1", "f2"], ["x2"]));
        g.Node.Add(N("SimplifiedLayerNormalization", ["x2", "model.norm.weight"], ["hf"], eps));
        g.Node.Add(N("MatMul", ["hf", "lm_head.weight"], ["logits"]));
        return new ModelProto { IrVersion = 8, Graph = g, OpsetImport = { new OperatorSetIdProto { Domain = "", Version = 17 } } };
    }

    [Fact]
    public void ScanRecurrence_IsALinearAttentionBlock()
    {
        using var model = ModelReader.LoadFromBytes(Build().ToByteArray(), "scan-linear-attention.onnx");
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var blk = Assert.Single(result.Structure!.Blocks);
        Assert.Equal(BlockKind.LinearAttention, blk.Kind);
        var mixer = blk.Mixer!;
        Assert.Equal("Scan", Assert.Single(mixer.Form.CoreOps).OpType);
        var st = Assert.Single(mixer.States);
        Assert.Equal((StateKind.Recurrent, "past_recurrent.0", "present_recurrent.0"), (st.Kind, st.Past!.Name, st.Present!.Name));
        Assert.Equal("model.layers.0.linear_attn.in_proj_qkv.weight", Assert.Single(Assert.Single(mixer.InputProjections).Linears).Weight.Name);
        Assert.Equal("model.layers.0.linear_attn.out_proj.weight", mixer.OutputProjection!.Weight.Name);
        Assert.Equal((FfnKind.Mlp, FfnActivation.Relu), (blk.Ffn!.Kind, blk.Ffn.Activation));
        Assert.Empty(StructureReport.Missing(blk));
    }

    [Fact]
    public void ScanRecurrence_RunsInOrt_AndMatchesAFloat64Reference()
    {
        using var dir = new TempFolder("scan");
        string path = dir.Path("model.onnx");
        File.WriteAllBytes(path, Build().ToByteArray());
        var x = Enumerable.Range(0, S * D).Select(i => MathF.Sin(0.4f * i + 0.1f)).ToArray();
        var past = Enumerable.Range(0, K * K).Select(i => MathF.Cos(0.3f * i) * 0.2f).ToArray();
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(path, options);
        using var xv = OrtValue.CreateTensorValueFromMemory(x, [1, S, D]);
        using var pv = OrtValue.CreateTensorValueFromMemory(past, [1, K, K]);
        using var outputs = session.Run(new RunOptions(), ["inputs_embeds", "past_recurrent.0"], [xv, pv], ["present_recurrent.0"]);
        var present = outputs[0].GetTensorDataAsSpan<float>().ToArray();

        // Reference: the recurrence on the RMS-normalized projections, in float64.
        var state = past.Select(v => (double)v).ToArray();
        for (int t = 0; t < S; t++)
        {
            double ms = 0;
            for (int i = 0; i < D; i++) ms += x[t * D + i] * (double)x[t * D + i];
            double inv = 1 / Math.Sqrt(ms / D + 1e-6);
            var qkv = new double[3 * K];
            for (int o = 0; o < 3 * K; o++)
                for (int i = 0; i < D; i++) qkv[o] += x[t * D + i] * inv * Wqkv[i * 3 * K + o];
            for (int a = 0; a < K; a++)
                for (int c = 0; c < K; c++) state[a * K + c] = Decay * state[a * K + c] + qkv[K + a] * qkv[2 * K + c];
        }
        for (int i = 0; i < K * K; i++) Assert.True(Math.Abs(present[i] - state[i]) <= 1e-5 * Math.Max(1, Math.Abs(state[i])), $"state[{i}]: {present[i]} vs {state[i]}");
    }
}
