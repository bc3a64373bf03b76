using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Analysis;

/// <summary>Outlier-triggering channels through a packed [q | k | v] weight (the genai GroupQueryAttention export,
/// ../shared/fixtures/exports/llama-genai-gqa-fp32, loaded read-only and edited in memory): only the query columns count.</summary>
public class PackedQkvTests
{
    [Fact]
    public void Analyze_PackedQkv_OnlyTheQueryColumnsScore()
    {
        using var model = ModelReader.Load(Fixtures.Export("llama-genai-gqa-fp32", "model.onnx"));
        var recognized = StructureRecognizer.Recognize(model);
        Assert.True(recognized.Recognized, recognized.Message);
        var block = recognized.Structure!.Blocks[0];
        var attention = block.Attention!;
        var packed = attention.PackedQkv!;
        Assert.Null(attention.Query);
        int hidden = (int)packed.InFeatures, q = attention.NumHeads!.Value * attention.HeadSize!.Value;
        Assert.Equal((attention.NumHeads.Value + 2 * attention.KvHeads!.Value) * attention.HeadSize.Value, (int)packed.OutFeatures);

        // Row 3 of the query columns x30; row 7 of the key and value columns x30 (must not count).
        var w = packed.Weight.ConstValue!.ToSingleArray();
        int Index(int row, int column) => packed.Layout == WeightLayout.InOut ? row * (int)packed.OutFeatures + column : column * hidden + row;
        for (int c = 0; c < packed.OutFeatures; c++)
        {
            if (c < q) w[Index(3, c)] *= 30;
            else w[Index(7, c)] *= 30;
        }
        packed.Weight.Graph.SetInitializerData(packed.Weight, ArrayTensor.Create<float>(w, packed.Weight.ConstValue.Dims.ToArray()));

        var s = new SyntheticStatistics();
        var x = s.Noise(hidden, 0.3);
        for (int r = 0; r < 16; r++) x[r / 8, r % 8, 7] = x[r / 8, r % 8, 3]; // rows 3 and 7 see the same input
        s.Add("block0.attention-input", ProbeKind.AttentionInput, 0, x, packed.Input.Name);
        var result = OutlierAnalyzer.Analyze(s.Build(), recognized.Structure);

        var found = Assert.Single(result.OutlierTriggeringChannels);
        Assert.Equal((0, 3, true, packed.Weight.Name), (found.Block, found.Channel, found.QuerySlice, found.Weight));
        double norm = Math.Sqrt(Enumerable.Range(0, q).Sum(c => (double)w[Index(3, c)] * w[Index(3, c)]));
        Assert.Equal(norm, found.RowNorm, norm * 1e-6);
        Assert.DoesNotContain(result.Notes, n => n.Kind == NoteKind.Approximation);
    }
}
