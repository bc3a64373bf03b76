using System.Text.Json;
using System.Text.Json.Nodes;

namespace OnnxOutlierTools.Mitigation.SinkBias;

/// <summary>What a model folder's companion files must say after the sink bias (for the writer of the output folder).
/// genai_config.json: <c>search.past_present_share_buffer</c> false (each attention reads a new tensor, prefix + cache, so
/// the past and present buffers cannot be one), <c>model.context_length</c> and <c>search.max_length</c> reduced by P (the
/// prefix takes the first P positions of the rotary tables). The tokenizer must not add the prefix (BOS) itself:
/// tokenizer.json's post-processor template loses its leading special token (<see cref="RemoveTemplateBos"/>;
/// onnxruntime-genai's tokenizer follows the template and ignores tokenizer_config.json's add_bos_token).</summary>
public static class SinkCompanions
{
    /// <summary>The updated genai_config.json text; throws <see cref="SinkBiasException"/> naming the file when it is not a
    /// JSON object.</summary>
    public static string UpdateGenAiConfig(string json, int prefixLength, string fileName = "genai_config.json")
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(prefixLength);
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new SinkBiasException($"{fileName}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new SinkBiasException($"{fileName}: not valid JSON ({e.Message})", e);
        }
        if (root["model"] is JsonObject model && model["context_length"] is JsonValue context && context.TryGetValue(out long length))
            model["context_length"] = Math.Max(0, length - prefixLength);
        if (root["search"] is not JsonObject search) root["search"] = search = new JsonObject();
        search["past_present_share_buffer"] = false;
        if (search["max_length"] is JsonValue max && max.TryGetValue(out long maxLength))
            search["max_length"] = Math.Max(0, maxLength - prefixLength);
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>tokenizer.json with the leading special token (BOS) removed from its TemplateProcessing post-processor's
    /// <c>single</c> and <c>pair</c> templates; null when the file has no such template (nothing to change).</summary>
    public static string? RemoveTemplateBos(string json, string fileName = "tokenizer.json")
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new SinkBiasException($"{fileName}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new SinkBiasException($"{fileName}: not valid JSON ({e.Message})", e);
        }
        bool changed = false;
        foreach (var processor in Processors(root["post_processor"]))
        {
            if (processor["type"]?.GetValue<string>() != "TemplateProcessing") continue;
            foreach (string key in new[] { "single", "pair" })
                if (processor[key] is JsonArray template && template.Count > 0 && template[0] is JsonObject first && first.ContainsKey("SpecialToken"))
                {
                    template.RemoveAt(0);
                    changed = true;
                }
        }
        return changed ? root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) : null;

        static IEnumerable<JsonObject> Processors(JsonNode? node)
        {
            if (node is not JsonObject processor) yield break;
            if (processor["type"]?.GetValue<string>() == "Sequence" && processor["processors"] is JsonArray list)
            {
                foreach (var inner in list) foreach (var p in Processors(inner)) yield return p;
            }
            else yield return processor;
        }
    }
}
