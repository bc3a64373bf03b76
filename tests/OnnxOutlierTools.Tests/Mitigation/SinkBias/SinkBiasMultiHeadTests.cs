using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Mitigation.SinkBias;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tests.Import;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Mitigation.SinkBias;

/// <summary>The sink bias on a MultiHeadAttention decoder (the genai builder's MultiHeadAttention + RotaryEmbedding form
/// with past_key/past_value): a seeded decoder with as many KV heads as heads written in the genai flavour with separate
/// rotary, each GroupQueryAttention turned into an equivalent causal MultiHeadAttention (checked against the
/// GroupQueryAttention model first), then rewritten: prompt and token-by-token decoding.</summary>
public sealed class SinkBiasMultiHeadTests(ITestOutputHelper output)
{
    [Fact]
    public void MultiHeadAttentionDecoder_TextAlone_MatchesOriginalOnBosPlusText()
    {
        using var temp = new TempFolder("sink-mha-built");
        var config = new DecoderConfig(dim: 64, hiddenDim: 176, layers: 2, heads: 4, kvHeads: 4, vocabSize: 256, maxSeqLen: 128);
        var options = new LlamaOnnxOptions { Flavour = LlamaOnnxFlavour.GenAiGqa, GqaRotary = GqaRotary.Separate };
        string gqaPath = temp.Path("gqa", "model.onnx");
        string mhaPath = temp.Path("mha", "model.onnx");
        using (var gqa = LlamaOnnxBuilder.Build(SyntheticDecoder.Create(config, seed: 77), options))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(gqaPath)!);
            ModelWriter.Save(gqa, gqaPath, new SaveOptions { Durable = false });
            foreach (var node in gqa.Graph.Nodes.Where(n => n.Is("GroupQueryAttention", "com.microsoft")).ToList()) ToMultiHeadAttention(node, config.Heads);
            Directory.CreateDirectory(Path.GetDirectoryName(mhaPath)!);
            ModelWriter.Save(gqa, mhaPath, new SaveOptions { Durable = false });
        }
        int[] prefix = [1];
        int[] text = [17, 203, 9, 88, 141, 5, 61, 240, 33, 7, 199, 42];
        using (var a = new KvCacheDecoder(gqaPath))
        using (var b = new KvCacheDecoder(mhaPath))
            Assert.True(Diff.MaxAbs(a.Run([.. prefix, .. text]).Logits, b.Run([.. prefix, .. text]).Logits) <= 1e-4, "the converted MultiHeadAttention model differs from its GroupQueryAttention source");

        using (var model = ModelReader.Load(mhaPath))
            Assert.All(SinkBiasHarness.Recognize(model, mhaPath).Blocks, blk => Assert.Equal(AttentionOp.MultiHeadAttention, blk.Attention!.Form.Op));
        var (rewritten, sink, _) = SinkBiasHarness.Rewrite(mhaPath, temp.Path("out"), SinkPrefix.Bos(1));
        Assert.Equal(SinkForm.Cache, sink.Plan.Form);
        double diff = SinkBiasHarness.Compare(mhaPath, rewritten, prefix, text, split: 5, output);
        Assert.True(diff <= 1e-4, $"max |diff| {diff}");
    }

    /// <summary>GroupQueryAttention(q, k, v, past_key, past_value, seqlens_k, total_sequence_length) with do_rotary = 0 and
    /// kv_num_heads = num_heads as MultiHeadAttention(q, k, v, -, -, -, past_key, past_value), unidirectional; same outputs.</summary>
    private static void ToMultiHeadAttention(Node node, int heads)
    {
        Assert.Equal(7, node.Inputs.Count);
        Value pastKey = node.Inputs[3]!, pastValue = node.Inputs[4]!;
        node.ReplaceInput(3, null);
        node.ReplaceInput(4, null);
        node.ReplaceInput(5, null);
        node.ReplaceInput(6, pastKey);
        node.AppendInput(pastValue);
        foreach (var attribute in node.Attributes.Select(a => a.Name).ToList()) node.RemoveAttribute(attribute);
        node.OpType = "MultiHeadAttention";
        node.SetAttribute(Attr.Int("num_heads", heads));
        node.SetAttribute(Attr.Int("unidirectional", 1));
    }
}
